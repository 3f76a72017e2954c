"""One proxy hop's tracing: decide and propagate the context at request start, build the span at the end.

A HopTracer is made once per (config, direction) and precomputes everything that does not change
per request (formats to read and write, the headers to strip, the span's constant tags), because
start() and finish() run on every request: together they must cost a few microseconds.

A direction with no tracer (no provider, `disableSpanReporting`, tracing off) does what Envoy does
when Istio leaves the connection manager without tracing (pilot/pkg/model/telemetry.go sets
`Disabled`, pilot/pkg/networking/core/tracing.go then configures none): it only ensures an
`x-request-id`, and passes every trace header through untouched, so the next hop's spans join the
last span that was reported. A tracer writes and reads only its own formats (Envoy's zipkin tracer
B3, plus W3C under USE_B3_WITH_W3C_PROPAGATION; its opentelemetry tracer W3C): the others pass.
That is the default; a provider's tracemesh extensions (`headerType`, after Kong's Zipkin plugin:
header_modes.py) change which formats are read and written, and may add request tags (request_tags.py)
and a response header carrying the trace id (inbound hops only: the hop a client's request arrives at).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from tracemesh_sidecar.config.model import ProviderConfig, ProxyConfig, TracingPolicy
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.stats import Stats
from tracemesh_sidecar.tracing.context import B3_MULTI, B3_SINGLE, FORMAT_HEADERS, W3C, extract_with, readers
from tracemesh_sidecar.tracing.facts import Direction, RequestFacts, ResponseFacts
from tracemesh_sidecar.tracing.header_modes import MISMATCH_TOTAL, HeaderMode, WritePlan, variant, write_plan
from tracemesh_sidecar.tracing.ids import new_request_id, new_span_id, new_trace_id
from tracemesh_sidecar.tracing.request_id import (
    CLIENT_TRACE_ID,
    FORCE_TRACE,
    REQUEST_ID,
    decide_by_request_id,
    new_decided_request_id,
    sampling_numerator,
)
from tracemesh_sidecar.tracing.sampling import decide
from tracemesh_sidecar.tracing.spanbuilder import SpanBuilder

MALFORMED_TOTAL: Final = "tracing.malformed_trace_headers"
# Envoy's route decorator header: an outbound hop sets it to its route's operation, the inbound hop
# names its SERVER span after it and removes it (ConnectionManagerImpl::ActiveStream::traceRequest).
DECORATOR_OPERATION: Final = "x-envoy-decorator-operation"
# Removed from every forwarded request: an Istio sidecar never takes a request for internal (see request_id.py).
_ALWAYS_REMOVED: Final = frozenset({FORCE_TRACE})


def provider_formats(provider: ProviderConfig) -> tuple[str, ...]:
    """The formats a provider's tracer reads (and owns): Envoy's zipkin tracer reads W3C only as a fallback
    under USE_B3_WITH_W3C_PROPAGATION (span_context_extractor.cc); its opentelemetry tracer reads W3C only."""
    if provider.kind != "zipkin":
        return (W3C,)
    return (B3_MULTI, B3_SINGLE, W3C) if provider.propagates_w3c else (B3_MULTI, B3_SINGLE)


class HopTracer:
    """The tracing of one direction ("inbound": SERVER spans, "outbound": CLIENT spans) of one config."""

    def __init__(self, config: ProxyConfig, direction: Direction, stats: Stats,
                 environ: Mapping[str, str] = os.environ, policy: TracingPolicy | None = None) -> None:
        """`policy`: the Telemetry mode to follow when it is not the direction's own (a gateway's SERVER
        span follows the CLIENT mode, as Istio traces gateways)."""
        if direction not in ("inbound", "outbound"):
            raise ValueError(f"direction is {direction!r}; use 'inbound' or 'outbound'")
        if policy is None:
            policy = config.tracing.client if direction == "outbound" else config.tracing.server
        provider = config.provider(policy.provider)
        active = policy.enabled and provider is not None and not policy.disable_span_reporting
        self.provider = provider.name if active and provider is not None else None
        self._stats = stats
        self._outbound = direction == "outbound"
        self._use_request_id = policy.use_request_id_for_trace_sampling
        self._numerator = sampling_numerator(policy.sampling_percentage)
        self._trace_id_64bit = provider is not None and provider.enable_64bit_trace_id
        propagates = not policy.disable_context_propagation
        # Removed from every forwarded request: inbound also the caller's decorator, which Envoy removes once read.
        always_removed = _ALWAYS_REMOVED if self._outbound else _ALWAYS_REMOVED.union((DECORATOR_OPERATION,))
        self._mode: HeaderMode | None = None
        if provider is not None and provider.header_type is not None and propagates:
            self._mode = HeaderMode(provider.header_type, provider.default_header_type, always_removed)
            owned = self._mode.reads
            self._readers = readers(owned)  # a mode reads all formats, or (ignore) none
        else:
            owned = provider_formats(provider) if provider is not None else ()
            extra = config.tracing.extra_extract + (provider.extra_extract if provider is not None else ())
            self._readers = readers(owned + extra)
        self._malformed_names = {name: f"tracing.malformed.{name}" for name, _ in self._readers}
        # Istio's: the tracer's own formats, written unless the policy leaves propagation alone; the headers it
        # may drop are those formats' (the next hop must not read stale ones).
        written = [name for name, writes in ((B3_MULTI, provider is not None and provider.propagates_b3),
                                             (W3C, provider is not None and provider.propagates_w3c))
                   if writes and propagates]
        droppable = frozenset().union(*(FORMAT_HEADERS[name] for name in owned)) if propagates else frozenset()
        self._plan = write_plan(written, droppable, always_removed)
        response_header = provider.response_header_for_trace_id if provider is not None else None
        self._response_header = f"{response_header}: " if response_header and not self._outbound else None
        self._spans = SpanBuilder(config.node, direction, policy, provider, environ, config.proxy_type, stats) \
            if active else None

    def start(self, request: RequestFacts, start_us: int) -> Hop:
        headers = request.headers
        to_set: list[tuple[str, str]] = []
        request_id = headers.get(REQUEST_ID)
        if self._spans is None:
            if not request_id:
                request_id = new_request_id()
                to_set.append((REQUEST_ID, request_id))
            return Hop(self, request, start_us, request_id, to_set, _ALWAYS_REMOVED, "", "", None, False,
                       False, "")
        if request_id:
            if self._use_request_id:
                traced, marked = decide_by_request_id(request_id, CLIENT_TRACE_ID in headers, self._numerator)
            else:  # Envoy: a request id not used for sampling leaves the decision to the tracer, which traces
                traced, marked = True, request_id
            if marked is not request_id:
                to_set.append((REQUEST_ID, marked))
        else:
            if self._use_request_id:
                traced, marked = new_decided_request_id(CLIENT_TRACE_ID in headers, self._numerator)
            else:
                traced, marked = True, new_request_id()
            to_set.append((REQUEST_ID, marked))
        mode = self._mode
        came: list[str] | None = None if mode is None else []
        result = extract_with(headers, self._readers, came)
        if result.malformed:
            self._count_malformed(result.malformed)
        context = result.context
        if context is None:
            trace_id = new_trace_id(self._trace_id_64bit)
            parent_id = None
            sampled = traced
            debug = False
            tracestate = None
        else:
            trace_id = context.trace_id or new_trace_id(self._trace_id_64bit)
            parent_id = context.span_id
            debug = context.debug
            sampled = decide(context.sampled, debug, traced)
            tracestate = context.tracestate
        span_id = new_span_id()
        plan = self._plan if mode is None or came is None else self._mode_plan(mode, came)
        for writer in plan.writers:
            writer.write(to_set, trace_id, span_id, parent_id, sampled, debug, tracestate)
        operation = request.operation
        if self._outbound:
            if request.decorated:
                to_set.append((DECORATOR_OPERATION, operation))
        else:
            operation = headers.get(DECORATOR_OPERATION) or operation
        to_remove = plan.removals[variant(parent_id is not None, debug, tracestate is not None)]
        hop = Hop(self, request, start_us, marked, to_set, to_remove, trace_id, span_id, parent_id, debug,
                  sampled, operation)
        if self._response_header is not None:
            hop.response_header_line = f"{self._response_header}{trace_id}\r\n".encode("latin-1")
        return hop

    def _mode_plan(self, mode: HeaderMode, came: list[str]) -> WritePlan:
        plan = mode.plan(came)
        if plan.mismatch:
            self._stats.inc(MISMATCH_TOTAL)
        return plan

    def _count_malformed(self, formats: tuple[str, ...]) -> None:
        self._stats.inc(MALFORMED_TOTAL, len(formats))
        for name in formats:
            self._stats.inc(self._malformed_names[name])


class Hop:
    """One request's tracing state between start() and finish()."""

    __slots__ = ("_debug", "_operation", "_parent_id", "_reports", "_request", "_request_id", "_span_id",
                 "_start_us", "_trace_id", "_tracer", "headers_to_remove", "headers_to_set", "provider",
                 "response_header_line")

    def __init__(self, tracer: HopTracer, request: RequestFacts, start_us: int, request_id: str,
                 headers_to_set: list[tuple[str, str]], headers_to_remove: frozenset[str], trace_id: str,
                 span_id: str, parent_id: str | None, debug: bool, reports: bool, operation: str) -> None:
        self.headers_to_set = headers_to_set  # set on the forwarded request, replacing same-named ones
        self.headers_to_remove = headers_to_remove  # lowercase names to drop from the forwarded request
        self.provider = tracer.provider  # where the finished span goes
        self.response_header_line = b""  # `name: trace-id\r\n` for the response (responseHeaderForTraceId)
        self._tracer = tracer
        self._request = request
        self._start_us = start_us
        self._request_id = request_id
        self._trace_id = trace_id
        self._span_id = span_id
        self._parent_id = parent_id
        self._debug = debug
        self._reports = reports
        self._operation = operation

    def finish(self, response: ResponseFacts, end_us: int) -> Span | None:
        """The span to report, or None when the direction has no tracer or the request is not sampled."""
        spans = self._tracer._spans
        if not self._reports or spans is None:
            return None
        return spans.build(self._trace_id, self._span_id, self._parent_id, self._debug, self._request_id,
                           self._operation, self._request, response, self._start_us, end_us)
