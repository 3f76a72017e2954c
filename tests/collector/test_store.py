"""The span store: merging, the bound, the indexes, and every query filter with Zipkin's semantics."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from collector_samples import NOW_US, bookinfo_trace, rpc, span, trace_id

from tracemesh_collector.query import TraceQuery, parse_annotation_query, trace_timestamp
from tracemesh_collector.store import SpanStore
from tracemesh_collector.trace_merge import merge_spans
from tracemesh_sidecar.spans.model import Annotation, Endpoint, Span

MINUTE = 60_000_000


def query(**fields: Any) -> TraceQuery:
    return TraceQuery(**{"end_us": NOW_US, **fields})


def stored(*traces: list[Span]) -> SpanStore:
    store = SpanStore()
    for spans in traces:
        store.add(spans)
    return store


def ids(traces: list[list[Span]]) -> list[str]:
    return [spans[0].trace_id for spans in traces]


# ---- writing -------------------------------------------------------------------------------


def test_a_span_reported_twice_is_served_once_with_what_both_reports_know() -> None:
    first = span(trace_id(1), "00000000000000a1", None, "productpage.default", "", "SERVER", NOW_US - MINUTE, 0)
    later = replace(first, name="productpage.default.svc.cluster.local:9080/*", duration=1500,
                    tags={"http.status_code": "503", "error": "true"}, annotations=[Annotation(NOW_US, "retry")])
    store = stored([first], [later], [later])
    assert store.span_count == 2  # the two distinct reports; the retried one is not kept again
    [merged] = store.get_trace(trace_id(1))
    assert (merged.name, merged.duration, merged.timestamp) == (later.name, 1500, first.timestamp)
    assert merged.tags == {"http.status_code": "503", "error": "true", "response_flags": "-"}
    assert merged.annotations == [Annotation(NOW_US, "retry")]
    assert store.span_names("productpage.default") == [later.name]


def test_client_and_server_halves_sharing_an_id_are_two_spans() -> None:
    client = span(trace_id(1), "00000000000000a1", None, "a.default", "x", "CLIENT", NOW_US - MINUTE, 10)
    server = replace(client, kind="SERVER", local_endpoint=Endpoint("b.default"), shared=True)
    assert stored([client, server]).span_count == 2


def test_merge_keeps_the_older_endpoint_fields_the_newer_report_lacks() -> None:
    old = span(trace_id(1), "00000000000000a1", None, "a.default", "x", "CLIENT", 5, 10, remote="b.default")
    new = replace(old, local_endpoint=Endpoint(port=8080), remote_endpoint=None, debug=True)
    merged = merge_spans(old, new)
    assert merged.local_endpoint == Endpoint("a.default", "10.244.0.5", None, 8080)
    assert merged.remote_endpoint == old.remote_endpoint
    assert merged.debug


def test_beyond_the_bound_whole_traces_go_earliest_first_and_their_names_with_them() -> None:
    store = SpanStore(max_spans=12)
    oldest = bookinfo_trace(trace_id(1), NOW_US - 3 * MINUTE)  # 7 spans
    store.add(oldest)
    store.add(bookinfo_trace(trace_id(2), NOW_US - MINUTE, with_ratings=False))  # 5: 12, at the bound
    assert store.span_count == 12
    store.add(bookinfo_trace(trace_id(3), NOW_US - 2 * MINUTE))  # 19 > 12: the earliest trace (1) goes
    assert (store.span_count, store.trace_count) == (12, 2)
    assert store.get_trace(trace_id(1)) == []
    assert len(store.get_trace(trace_id(3))) == 7
    store.add([span(trace_id(4), "00000000000000f1", None, "solo.default", "x", "SERVER", NOW_US, 5)])
    assert store.get_trace(trace_id(3)) == []  # 13 > 12: now trace 3 is the earliest
    assert store.services() == ["details.default", "productpage.default", "reviews.default", "solo.default"]
    assert "ratings.default" not in store.remote_services("reviews.default")


def test_a_batch_larger_than_the_bound_keeps_the_newest_traces() -> None:
    store = SpanStore(max_spans=7)
    store.add(bookinfo_trace(trace_id(1), NOW_US - 2 * MINUTE) + bookinfo_trace(trace_id(2), NOW_US - MINUTE))
    assert ids(store.find_traces(query())) == [trace_id(2)]


def test_a_bound_below_one_span_is_refused() -> None:
    with pytest.raises(ValueError, match="max_spans"):
        SpanStore(max_spans=0)


# ---- lookups -------------------------------------------------------------------------------


def test_a_64_bit_id_finds_the_128_bit_trace_it_is_the_low_half_of() -> None:
    long_id = "4e441824ec2b6a44ffdc9bb9a6453df3"
    store = stored(bookinfo_trace(long_id, NOW_US - MINUTE))
    assert len(store.get_trace("ffdc9bb9a6453df3")) == 7
    assert len(store.get_trace(long_id.upper())) == 7
    assert store.get_trace("1111111111111111ffdc9bb9a6453df3") == []
    assert store.get_trace("0000000000000001") == []


def test_get_traces_returns_the_known_ones() -> None:
    store = stored(bookinfo_trace(trace_id(1), NOW_US), bookinfo_trace(trace_id(2), NOW_US))
    assert sorted(ids(store.get_traces([trace_id(2), trace_id(9), trace_id(1)]))) == [trace_id(1), trace_id(2)]


def test_services_span_names_remote_services_and_operations() -> None:
    store = stored(bookinfo_trace(trace_id(1), NOW_US))
    assert store.services() == ["details.default", "productpage.default", "ratings.default", "reviews.default"]
    assert store.span_names("productpage.default") == [
        "details.default.svc.cluster.local:9080/*", "productpage.default.svc.cluster.local:9080/*",
        "reviews.default.svc.cluster.local:9080/*"]
    assert store.remote_services("PRODUCTPAGE.default") == ["details.default", "reviews.default"]
    assert store.operations("reviews.default") == [("ratings.default.svc.cluster.local:9080/*", "CLIENT"),
                                                   ("reviews.default.svc.cluster.local:9080/*", "SERVER")]
    assert store.span_names("unknown") == [] and store.remote_services("unknown") == []


# ---- queries -------------------------------------------------------------------------------


def three_traces() -> SpanStore:
    """1: v1 (5 spans) 10 min ago; 2: v2 with ratings 5 min ago; 3: ratings failing 1 min ago."""
    return stored(bookinfo_trace(trace_id(1), NOW_US - 10 * MINUTE, with_ratings=False),
                  bookinfo_trace(trace_id(2), NOW_US - 5 * MINUTE),
                  bookinfo_trace(trace_id(3), NOW_US - MINUTE, ratings_status="503"))


def test_newest_first_and_limited() -> None:
    store = three_traces()
    assert ids(store.find_traces(query())) == [trace_id(3), trace_id(2), trace_id(1)]
    assert ids(store.find_traces(query(limit=2))) == [trace_id(3), trace_id(2)]


@pytest.mark.parametrize(("filters", "expected"), [
    ({"service_name": "ratings.default"}, [3, 2]),
    ({"service_name": "RATINGS.default"}, [3, 2]),
    ({"service_name": "nothing.default"}, []),
    ({"span_name": "ratings.default.svc.cluster.local:9080/*"}, [3, 2]),
    ({"service_name": "details.default", "span_name": "ratings.default.svc.cluster.local:9080/*"}, []),
    ({"service_name": "reviews.default", "remote_service_name": "ratings.default"}, [3, 2]),
    ({"service_name": "productpage.default", "remote_service_name": "ratings.default"}, []),
    ({"annotation_query": {"error": ""}}, [3]),
    ({"annotation_query": {"http.status_code": "503"}}, [3]),
    ({"annotation_query": {"http.status_code": "503", "error": ""}}, [3]),
    ({"annotation_query": {"http.status_code": "404"}}, []),
    ({"service_name": "details.default", "annotation_query": {"error": ""}}, []),
    ({"min_duration_us": 19_000}, [3, 2, 1]),
    ({"min_duration_us": 20_001}, []),
    ({"service_name": "ratings.default", "min_duration_us": 3_800, "max_duration_us": 4_000}, [3, 2]),
    ({"service_name": "details.default", "min_duration_us": 3_801}, []),
    ({"min_duration_us": 1, "max_duration_us": 2_000}, []),
    ({"lookback_us": 6 * MINUTE}, [3, 2]),
    ({"end_us": NOW_US - 2 * MINUTE}, [2, 1]),
    ({"end_us": NOW_US - 2 * MINUTE, "lookback_us": 9 * MINUTE}, [2, 1]),
    ({"end_us": NOW_US - 2 * MINUTE, "lookback_us": 7 * MINUTE}, [2]),
    ({"end_us": NOW_US - 2 * MINUTE, "lookback_us": 4 * MINUTE}, [2]),
])
def test_every_filter(filters: dict[str, Any], expected: list[int]) -> None:
    assert ids(three_traces().find_traces(query(**filters))) == [trace_id(n) for n in expected]


def test_service_name_matches_a_remote_endpoint_too() -> None:
    """A callee that reports nothing is still found through its callers' CLIENT spans."""
    client, _server = rpc(trace_id(1), None, "productpage.default", "mysql.default", NOW_US - MINUTE, 500)
    assert ids(stored([client]).find_traces(query(service_name="mysql.default"))) == [trace_id(1)]


def test_an_annotation_value_answers_a_bare_word() -> None:
    traced = span(trace_id(1), "00000000000000a1", None, "a.default", "x", "SERVER", NOW_US - MINUTE, 9)
    traced.annotations.append(Annotation(NOW_US - MINUTE, "retried"))
    store = stored([traced])
    assert ids(store.find_traces(query(annotation_query={"retried": ""}))) == [trace_id(1)]
    assert store.find_traces(query(annotation_query={"retried": "yes"})) == []


def test_parse_annotation_query() -> None:
    assert parse_annotation_query("error and http.status_code=500") == {"error": "", "http.status_code": "500"}
    assert parse_annotation_query("http.url=/a=b") == {"http.url": "/a=b"}
    assert parse_annotation_query("") == {}


def test_trace_time_is_the_roots_timestamp_else_the_earliest() -> None:
    trace = bookinfo_trace(trace_id(1), NOW_US)
    assert trace_timestamp(trace) == NOW_US
    assert trace_timestamp(trace[1:]) == NOW_US + 1_000
    assert trace_timestamp([replace(s, timestamp=0) for s in trace]) == 0
