"""Spans for the collector tests: Bookinfo-shaped traces as the mesh reports them, placed in time at will."""

from __future__ import annotations

import itertools

from tracemesh_sidecar.spans.model import Endpoint, Span, SpanKind

NOW_S = 1_763_700_000.0  # the collector's clock in these tests
NOW_US = int(NOW_S * 1_000_000)
_ids = itertools.count(1)


def span_id() -> str:
    return f"{next(_ids):016x}"


def span(trace_id: str, id: str, parent_id: str | None, service: str, name: str, kind: SpanKind | None,
         timestamp: int, duration: int, remote: str | None = None, status: str = "200",
         tags: dict[str, str] | None = None) -> Span:
    return Span(
        trace_id=trace_id, id=id, parent_id=parent_id, name=name, kind=kind, timestamp=timestamp, duration=duration,
        local_endpoint=Endpoint(service_name=service, ipv4="10.244.0.5"),
        remote_endpoint=Endpoint(service_name=remote, ipv4="10.244.0.7", port=9080) if remote else None,
        tags={"http.status_code": status, "response_flags": "-", **(tags or {})},
    )


def rpc(trace_id: str, parent_id: str | None, caller: str, callee: str, start: int, duration: int,
        status: str = "200") -> tuple[Span, Span]:
    """The CLIENT span of `caller` and the SERVER span of `callee` for one call (mesh contract: one RPC = two spans)."""
    name = f"{callee.split('.')[0]}.default.svc.cluster.local:9080/*"
    error = {"error": "true"} if status.startswith("5") else {}
    client_id, server_id = span_id(), span_id()
    client = span(trace_id, client_id, parent_id, caller, name, "CLIENT", start, duration, remote=callee,
                  status=status, tags=error)
    server = span(trace_id, server_id, client_id, callee, name, "SERVER", start + 100, duration - 200, status=status,
                  tags=error)
    return client, server


def bookinfo_trace(trace_id: str, start: int, with_ratings: bool = True, ratings_status: str = "200") -> list[Span]:
    """productpage's root SERVER span, then details, reviews and (v2/v3) reviews -> ratings: 7 spans (5 without)."""
    root = span(trace_id, span_id(), None, "productpage.default", "productpage.default.svc.cluster.local:9080/*",
                "SERVER", start, 20_000)
    spans = [root]
    spans += rpc(trace_id, root.id, "productpage.default", "details.default", start + 1_000, 3_000)
    reviews = rpc(trace_id, root.id, "productpage.default", "reviews.default", start + 5_000, 12_000)
    spans += reviews
    if with_ratings:
        spans += rpc(trace_id, reviews[1].id, "reviews.default", "ratings.default", start + 6_000, 4_000,
                     status=ratings_status)
    return spans


def trace_id(number: int) -> str:
    return f"4e441824ec2b6a44{number:016x}"  # a real 128-bit id: a zero high half would read as 64-bit
