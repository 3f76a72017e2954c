"""The headers every Bookinfo service copies from its inbound request to its outbound ones.

A sidecar cannot tell which outbound call belongs to which inbound request; the application
joins them by passing these on (the mesh contract's list, plus the extras Istio's productpage
forwards: vendor tracers, the user's identity and session).
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict

PROPAGATED_HEADERS: frozenset[str] = frozenset({
    "x-request-id",
    # B3 (Zipkin), multi and single header
    "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3",
    # W3C trace context
    "traceparent", "tracestate",
    # Jaeger and OpenTracing / Lightstep
    "uber-trace-id", "x-ot-span-context",
    # other tracers Istio's productpage supports
    "x-cloud-trace-context", "grpc-trace-bin", "sw8",
    "x-datadog-trace-id", "x-datadog-parent-id", "x-datadog-sampling-priority",
    # application context: who the user is and their session
    "end-user", "user-agent", "cookie", "authorization", "jwt",
})
PROPAGATED_PREFIXES: tuple[str, ...] = ("ot-tracer-",)


def is_propagated(name: str) -> bool:
    lowered = name.lower()
    return lowered in PROPAGATED_HEADERS or lowered.startswith(PROPAGATED_PREFIXES)


def propagated_headers(inbound: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    """The subset of `inbound` (name, value) pairs to send on; repeated headers stay repeated."""
    return CIMultiDict((name, value) for name, value in inbound if is_propagated(name))
