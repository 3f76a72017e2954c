"""One proxy hop's tracing: decide and propagate the context at request start, build the span at the end.

A HopTracer is made once per (config, direction) and precomputes everything that does not change
per request (formats to read and write, the headers to strip, the span's constant tags), because
start() and finish() run on every request: together they must cost a few microseconds.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping

from tracemesh_sidecar.config.model import ProxyConfig
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.stats import Stats
from tracemesh_sidecar.tracing import b3, w3c
from tracemesh_sidecar.tracing.context import TRACE_HEADERS, extract_with, readers
from tracemesh_sidecar.tracing.facts import Direction, RequestFacts, ResponseFacts
from tracemesh_sidecar.tracing.ids import new_request_id, new_span_id, new_trace_id
from tracemesh_sidecar.tracing.sampling import decide
from tracemesh_sidecar.tracing.spanbuilder import SpanBuilder

REQUEST_ID = "x-request-id"
MALFORMED_TOTAL = "tracing.malformed_trace_headers"
_NOTHING: frozenset[str] = frozenset()


class HopTracer:
    """The tracing of one direction ("inbound": SERVER spans, "outbound": CLIENT spans) of one config."""

    def __init__(self, config: ProxyConfig, direction: Direction, stats: Stats,
                 environ: Mapping[str, str] = os.environ) -> None:
        if direction not in ("inbound", "outbound"):
            raise ValueError(f"direction is {direction!r}; use 'inbound' or 'outbound'")
        policy = config.tracing.client if direction == "outbound" else config.tracing.server
        provider = config.provider(policy.provider)
        self.provider = provider.name if provider is not None else None
        self._stats = stats
        self._enabled = policy.enabled
        self._reports = provider is not None and not policy.disable_span_reporting
        self._percentage = policy.sampling_percentage
        self._trace_id_64bit = provider is not None and provider.enable_64bit_trace_id
        self._readers = readers(config.tracing.extra_extract)
        self._malformed_names = {name: f"tracing.malformed.{name}" for name, _ in self._readers}
        propagates = not policy.disable_context_propagation
        # No provider still propagates B3, like a sidecar whose tracer reports nowhere.
        self._writes_b3 = propagates and (provider is None or provider.propagates_b3)
        self._writes_w3c = propagates and provider is not None and provider.propagates_w3c
        self._removals = tuple(self._stale_headers(variant) for variant in range(8))
        self._spans = SpanBuilder(config.node, direction, policy, provider, environ)

    def start(self, request: RequestFacts, start_us: int) -> Hop:
        headers = request.headers
        to_set: list[tuple[str, str]] = []
        request_id = headers.get(REQUEST_ID)
        if not request_id:
            request_id = new_request_id()
            to_set.append((REQUEST_ID, request_id))
        if not self._enabled:
            return Hop(self, request, start_us, request_id, to_set, _NOTHING, "", "", None, False, False)
        result = extract_with(headers, self._readers)
        if result.malformed:
            self._count_malformed(result.malformed)
        context = result.context
        if context is None:
            trace_id = new_trace_id(self._trace_id_64bit)
            parent_id = None
            sampled = decide(None, False, self._percentage, random.random)
            debug = False
            tracestate = None
        else:
            trace_id = context.trace_id or new_trace_id(self._trace_id_64bit)
            parent_id = context.span_id
            debug = context.debug
            sampled = decide(context.sampled, debug, self._percentage, random.random)
            tracestate = context.tracestate
        span_id = new_span_id()
        if self._writes_b3:
            b3.inject_multi(to_set, trace_id, span_id, parent_id, sampled, debug)
        if self._writes_w3c:
            w3c.inject(to_set, trace_id, span_id, sampled, tracestate)
        to_remove = self._removals[_variant(parent_id is not None, debug, tracestate is not None)]
        return Hop(self, request, start_us, request_id, to_set, to_remove, trace_id, span_id, parent_id,
                   debug, sampled and self._reports)

    def _count_malformed(self, formats: tuple[str, ...]) -> None:
        self._stats.inc(MALFORMED_TOTAL, len(formats))
        for name in formats:
            self._stats.inc(self._malformed_names[name])

    def _stale_headers(self, variant: int) -> frozenset[str]:
        """Every trace header this hop does not write for the variant: the next hop must not read them."""
        has_parent, debug, has_tracestate = bool(variant & 1), bool(variant & 2), bool(variant & 4)
        written: list[tuple[str, str]] = []
        if self._writes_b3:
            b3.inject_multi(written, "", "", "" if has_parent else None, True, debug)
        if self._writes_w3c:
            w3c.inject(written, "", "", True, "" if has_tracestate else None)
        return TRACE_HEADERS.difference(name for name, _ in written)


def _variant(has_parent: bool, debug: bool, has_tracestate: bool) -> int:
    return has_parent | (debug << 1) | (has_tracestate << 2)


class Hop:
    """One request's tracing state between start() and finish()."""

    __slots__ = ("_debug", "_parent_id", "_reports", "_request", "_request_id", "_span_id", "_start_us",
                 "_trace_id", "_tracer", "headers_to_remove", "headers_to_set", "provider")

    def __init__(self, tracer: HopTracer, request: RequestFacts, start_us: int, request_id: str,
                 headers_to_set: list[tuple[str, str]], headers_to_remove: frozenset[str], trace_id: str,
                 span_id: str, parent_id: str | None, debug: bool, reports: bool) -> None:
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

    def finish(self, response: ResponseFacts, end_us: int) -> Span | None:
        """The span to report, or None when tracing is off, the request is not sampled or reporting is off."""
        if not self._reports:
            return None
        return self._tracer._spans.build(self._trace_id, self._span_id, self._parent_id, self._debug,
                                         self._request_id, self._request, response, self._start_us, end_us)
