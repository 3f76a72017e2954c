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
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from tracemesh_sidecar.config.model import ProviderConfig, ProxyConfig, TracingPolicy
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.stats import Stats
from tracemesh_sidecar.tracing import b3, w3c
from tracemesh_sidecar.tracing.context import B3_MULTI, B3_SINGLE, FORMAT_HEADERS, W3C, extract_with, readers
from tracemesh_sidecar.tracing.facts import Direction, RequestFacts, ResponseFacts
from tracemesh_sidecar.tracing.ids import new_request_id, new_span_id, new_trace_id
from tracemesh_sidecar.tracing.request_id import (
    CLIENT_TRACE_ID,
    FORCE_TRACE,
    REQUEST_ID,
    decide_by_request_id,
    sampling_numerator,
)
from tracemesh_sidecar.tracing.sampling import decide
from tracemesh_sidecar.tracing.spanbuilder import SpanBuilder

MALFORMED_TOTAL = "tracing.malformed_trace_headers"
# Envoy's route decorator header: an outbound hop sets it to its route's operation, the inbound hop
# names its SERVER span after it and removes it (ConnectionManagerImpl::ActiveStream::traceRequest).
DECORATOR_OPERATION = "x-envoy-decorator-operation"
# Removed from every forwarded request: an Istio sidecar never takes a request for internal (see request_id.py).
_ALWAYS_REMOVED = frozenset({FORCE_TRACE})


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
        owned = provider_formats(provider) if provider is not None else ()
        self._readers = readers(owned + config.tracing.extra_extract)
        self._malformed_names = {name: f"tracing.malformed.{name}" for name, _ in self._readers}
        propagates = not policy.disable_context_propagation
        self._writes_b3 = propagates and provider is not None and provider.propagates_b3
        self._writes_w3c = propagates and provider is not None and provider.propagates_w3c
        # The headers this hop may drop: its formats' (unless it leaves propagation alone), and inbound the
        # caller's decorator, which Envoy removes once read.
        droppable = frozenset().union(*(FORMAT_HEADERS[name] for name in owned)) if propagates else frozenset()
        if not self._outbound:
            droppable = droppable.union((DECORATOR_OPERATION,))
        self._removals = tuple(self._stale_headers(droppable, variant) for variant in range(8))
        self._spans = SpanBuilder(config.node, direction, policy, provider, environ, config.proxy_type) \
            if active else None

    def start(self, request: RequestFacts, start_us: int) -> Hop:
        headers = request.headers
        to_set: list[tuple[str, str]] = []
        request_id = headers.get(REQUEST_ID)
        generated = not request_id
        if not request_id:
            request_id = new_request_id()
        if self._spans is None:
            if generated:
                to_set.append((REQUEST_ID, request_id))
            return Hop(self, request, start_us, request_id, to_set, _ALWAYS_REMOVED, "", "", None, False,
                       False, "")
        if self._use_request_id:
            traced, marked = decide_by_request_id(request_id, CLIENT_TRACE_ID in headers, self._numerator)
        else:  # Envoy: a request id not used for sampling leaves the decision to the tracer, which traces
            traced, marked = True, request_id
        if generated or marked is not request_id:
            to_set.append((REQUEST_ID, marked))
        result = extract_with(headers, self._readers)
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
        if self._writes_b3:
            b3.inject_multi(to_set, trace_id, span_id, parent_id, sampled, debug)
        if self._writes_w3c:
            w3c.inject(to_set, trace_id, span_id, sampled, tracestate)
        operation = request.operation
        if self._outbound:
            if request.decorated:
                to_set.append((DECORATOR_OPERATION, operation))
        else:
            operation = headers.get(DECORATOR_OPERATION) or operation
        to_remove = self._removals[_variant(parent_id is not None, debug, tracestate is not None)]
        return Hop(self, request, start_us, marked, to_set, to_remove, trace_id, span_id, parent_id, debug,
                   sampled, operation)

    def _count_malformed(self, formats: tuple[str, ...]) -> None:
        self._stats.inc(MALFORMED_TOTAL, len(formats))
        for name in formats:
            self._stats.inc(self._malformed_names[name])

    def _stale_headers(self, droppable: frozenset[str], variant: int) -> frozenset[str]:
        """The droppable headers this tracer does not write for the variant (the next hop must not read them),
        and those removed from every request."""
        has_parent, debug, has_tracestate = bool(variant & 1), bool(variant & 2), bool(variant & 4)
        written: list[tuple[str, str]] = []
        if self._writes_b3:
            b3.inject_multi(written, "", "", "" if has_parent else None, True, debug)
        if self._writes_w3c:
            w3c.inject(written, "", "", True, "" if has_tracestate else None)
        return droppable.difference(name for name, _ in written).union(_ALWAYS_REMOVED)


def _variant(has_parent: bool, debug: bool, has_tracestate: bool) -> int:
    return has_parent | (debug << 1) | (has_tracestate << 2)


class Hop:
    """One request's tracing state between start() and finish()."""

    __slots__ = ("_debug", "_operation", "_parent_id", "_reports", "_request", "_request_id", "_span_id",
                 "_start_us", "_trace_id", "_tracer", "headers_to_remove", "headers_to_set", "provider")

    def __init__(self, tracer: HopTracer, request: RequestFacts, start_us: int, request_id: str,
                 headers_to_set: list[tuple[str, str]], headers_to_remove: frozenset[str], trace_id: str,
                 span_id: str, parent_id: str | None, debug: bool, reports: bool, operation: str) -> None:
        self.headers_to_set = headers_to_set  # set on the forwarded request, replacing same-named ones
        self.headers_to_remove = headers_to_remove  # lowercase names to drop from the forwarded request
        self.provider = tracer.provider  # where the finished span goes
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
