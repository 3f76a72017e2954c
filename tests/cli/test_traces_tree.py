"""The trace tree printed by `tracemesh traces` and `tracemesh demo`: golden renderings."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tracemesh_cli.trace_tree import format_duration, render_trace, status
from tracemesh_sidecar.spans.model import Endpoint, Span, SpanKind

TRACE = "4e441824ec2b6a44ffdc9bb9a6453df3"
T0 = 1_763_700_000_000_000


def span(id: str, parent: str | None, service: str, callee: str, kind: SpanKind, start: int, duration: int,
         code: str = "200", **tags: str) -> Span:
    return Span(trace_id=TRACE, id=id, parent_id=parent, name=f"{callee}.default.svc.cluster.local:9080/*",
                kind=kind, timestamp=T0 + start, duration=duration, local_endpoint=Endpoint(f"{service}.default"),
                tags={"http.status_code": code, "response_flags": "-", **tags})


# One GET /productpage answered by reviews v2: the root SERVER span and a CLIENT/SERVER pair per RPC,
# listed out of order as a backend may return them.
BOOKINFO = [
    span("000000000000000b", "000000000000000a", "reviews", "ratings", "CLIENT", 9_000, 4_200),
    span("0000000000000001", None, "productpage", "productpage", "SERVER", 0, 25_400),
    span("000000000000000a", "0000000000000004", "reviews", "reviews", "SERVER", 8_100, 11_800),
    span("0000000000000002", "0000000000000001", "productpage", "details", "CLIENT", 1_000, 3_100),
    span("0000000000000003", "0000000000000002", "details", "details", "SERVER", 1_400, 2_000),
    span("0000000000000004", "0000000000000001", "productpage", "reviews", "CLIENT", 8_000, 12_500),
    span("000000000000000c", "000000000000000b", "ratings", "ratings", "SERVER", 9_300, 650),
]

BOOKINFO_TREE = """\
Trace 4e441824ec2b6a44ffdc9bb9a6453df3  7 spans  25.40ms
productpage.default          productpage.default.svc.cluster.local:9080/*  SERVER  25.40ms  200
├─ productpage.default       details.default.svc.cluster.local:9080/*      CLIENT   3.10ms  200
│  └─ details.default        details.default.svc.cluster.local:9080/*      SERVER   2.00ms  200
└─ productpage.default       reviews.default.svc.cluster.local:9080/*      CLIENT  12.50ms  200
   └─ reviews.default        reviews.default.svc.cluster.local:9080/*      SERVER  11.80ms  200
      └─ reviews.default     ratings.default.svc.cluster.local:9080/*      CLIENT   4.20ms  200
         └─ ratings.default  ratings.default.svc.cluster.local:9080/*      SERVER    650µs  200"""


def test_a_bookinfo_trace() -> None:
    assert render_trace(BOOKINFO) == BOOKINFO_TREE


def test_spans_whose_parent_is_missing_are_roots_and_say_so() -> None:
    """The productpage CLIENT span to reviews was lost: reviews' subtree stays, as a second root."""
    partial = [s for s in BOOKINFO if s.id != "0000000000000004"]
    assert render_trace(partial) == """\
Trace 4e441824ec2b6a44ffdc9bb9a6453df3  6 spans  25.40ms
productpage.default     productpage.default.svc.cluster.local:9080/*  SERVER  25.40ms  200
└─ productpage.default  details.default.svc.cluster.local:9080/*      CLIENT   3.10ms  200
   └─ details.default   details.default.svc.cluster.local:9080/*      SERVER   2.00ms  200
reviews.default         reviews.default.svc.cluster.local:9080/*      SERVER  11.80ms  200  \
(parent 0000000000000004 not in trace)
└─ reviews.default      ratings.default.svc.cluster.local:9080/*      CLIENT   4.20ms  200
   └─ ratings.default   ratings.default.svc.cluster.local:9080/*      SERVER    650µs  200"""


def test_failures_show_error_and_response_flags() -> None:
    failed = [
        span("0000000000000001", None, "productpage", "productpage", "SERVER", 0, 2_000_000),
        span("0000000000000002", "0000000000000001", "productpage", "reviews", "CLIENT", 10, 1_999_000, "503",
             error="true", response_flags="UF"),
    ]
    assert render_trace(failed).splitlines()[2].endswith("CLIENT  1.999s  503 ERROR UF")


def test_a_parent_cycle_drops_no_span() -> None:
    looped = [replace(BOOKINFO[1], parent_id="000000000000000c"), *BOOKINFO[2:]]
    assert len(render_trace(looped).splitlines()) == 1 + 6


@pytest.mark.parametrize(("microseconds", "shown"), [
    (0, "0µs"), (999, "999µs"), (1_000, "1.00ms"), (25_404, "25.40ms"), (999_999, "1000.00ms"),
    (1_000_000, "1.000s"), (61_500_000, "61.500s")])
def test_durations(microseconds: int, shown: str) -> None:
    assert format_duration(microseconds) == shown


@pytest.mark.parametrize(("tags", "shown"), [
    ({}, "-"), ({"http.status_code": "200", "response_flags": "-"}, "200"),
    ({"error": "true"}, "- ERROR"), ({"http.status_code": "504", "error": "true", "response_flags": "UT"},
                                     "504 ERROR UT"),
    ({"http.status_code": "200", "error": "false"}, "200")])
def test_status(tags: dict[str, str], shown: str) -> None:
    assert status(replace(BOOKINFO[0], tags=tags)) == shown


def test_an_empty_trace() -> None:
    assert render_trace([]) == "(empty trace)"
