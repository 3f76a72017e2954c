"""The Bookinfo trace-shape check: complete traces pass, and each way a trace can be wrong is named."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from bookinfo_traces import bookinfo_trace, find

from tracemesh_bookinfo.trace_shape import check_bookinfo_trace, inspect_bookinfo_trace, summarize
from tracemesh_sidecar.spans.model import Endpoint, Span


@pytest.mark.parametrize(("version", "count"), [("v1", 5), ("v2", 7), ("v3", 7)])
def test_complete_traces_pass_and_say_which_reviews_answered(version: str, count: int) -> None:
    spans = bookinfo_trace(version)
    assert len(spans) == count
    result = inspect_bookinfo_trace(spans)
    assert result.problems == () and result.complete
    assert (result.reviews_version, result.trace_id) == (version, spans[0].trace_id)


def test_other_namespace_and_ingress_gateway() -> None:
    assert check_bookinfo_trace(bookinfo_trace("v3", "shop"), "shop") == []
    assert check_bookinfo_trace(bookinfo_trace("v3", "shop")) != []  # checked against the wrong namespace
    with_gateway = bookinfo_trace("v2", ingress_gateway=True)
    assert len(with_gateway) == 9
    assert check_bookinfo_trace(with_gateway, ingress_gateway=True) == []
    assert any("root span should be the SERVER span of productpage" in p for p in check_bookinfo_trace(with_gateway))


def test_the_gateway_shape_is_istios_ingress_trace() -> None:
    assert len(bookinfo_trace("v1", ingress_gateway=True)) == 7
    assert check_bookinfo_trace(bookinfo_trace("v1", ingress_gateway=True), ingress_gateway=True) == []
    renamed = bookinfo_trace("v1", ingress_gateway=True)
    find(renamed, "CLIENT", "istio-ingressgateway").name = "productpage.default.svc.cluster.local:9080/*"
    assert any("router outbound|9080||productpage" in p for p in check_bookinfo_trace(renamed, ingress_gateway=True))
    undecorated = bookinfo_trace("v1", ingress_gateway=True)
    find(undecorated, "SERVER", "productpage").name = "productpage.default.svc.cluster.local:9080/*"
    assert check_bookinfo_trace(undecorated, ingress_gateway=True) != []
    subset = bookinfo_trace("v2", ingress_gateway=True)
    find(subset, "CLIENT", "productpage", "reviews").tags["upstream_cluster"] = \
        "outbound|9080|v1|reviews.default.svc.cluster.local"
    assert check_bookinfo_trace(subset, ingress_gateway=True) == []
    subset[0].tags["upstream_cluster"] = "outbound|9080||details.default.svc.cluster.local"
    assert any("upstream_cluster" in p for p in check_bookinfo_trace(subset, ingress_gateway=True))


def test_order_of_spans_does_not_matter() -> None:
    assert check_bookinfo_trace(list(reversed(bookinfo_trace("v2")))) == []


def drop_ratings_server(spans: list[Span]) -> None:
    spans.remove(find(spans, "SERVER", "ratings"))


def add_stray_span(spans: list[Span]) -> None:
    spans.append(replace(find(spans, "CLIENT", "productpage", "details"), id="00000000000000ff"))


def reparent_details_server(spans: list[Span]) -> None:
    server = find(spans, "SERVER", "details")
    server.parent_id = find(spans, "CLIENT", "productpage", "reviews").id


def reparent_reviews_client(spans: list[Span]) -> None:
    find(spans, "CLIENT", "productpage", "reviews").parent_id = "00000000000000aa"


def split_trace_id(spans: list[Span]) -> None:
    find(spans, "SERVER", "ratings").trace_id = "0" * 31 + "1"


def server_starts_before_client(spans: list[Span]) -> None:
    server = find(spans, "SERVER", "details")
    server.timestamp = find(spans, "CLIENT", "productpage", "details").timestamp - 1


def server_ends_after_client(spans: list[Span]) -> None:
    find(spans, "SERVER", "reviews").duration += 1_000_000


def rename_span(spans: list[Span]) -> None:
    find(spans, "SERVER", "details").name = "details:9080/*"


def wrong_service_name(spans: list[Span]) -> None:
    find(spans, "SERVER", "details").local_endpoint = Endpoint("details", "10.0.0.1")


def drop_tag(spans: list[Span]) -> None:
    del find(spans, "CLIENT", "reviews").tags["peer.address"]


def wrong_upstream_cluster(spans: list[Span]) -> None:
    find(spans, "CLIENT", "productpage", "details").tags["upstream_cluster"] = "outbound|9080||details"


def error_status(spans: list[Span]) -> None:
    span = find(spans, "SERVER", "ratings")
    span.tags.update({"http.status_code": "503", "error": "true", "response_flags": "UF"})


def two_roots(spans: list[Span]) -> None:
    find(spans, "SERVER", "details").parent_id = None


def duplicate_id(spans: list[Span]) -> None:
    find(spans, "SERVER", "ratings").id = find(spans, "SERVER", "details").id


def unknown_reviews_version(spans: list[Span]) -> None:
    find(spans, "SERVER", "reviews").tags["istio.canonical_revision"] = "v9"


def other_request_id(spans: list[Span]) -> None:
    find(spans, "SERVER", "ratings").tags["guid:x-request-id"] = "another"


def zero_duration(spans: list[Span]) -> None:
    find(spans, "SERVER", "ratings").duration = 0


@pytest.mark.parametrize(("breaks", "expected"), [
    (drop_ratings_server, "expected 7 spans (reviews v2 answered), got 6"),
    (drop_ratings_server, "expected one SERVER span of ratings.default named"),
    (add_stray_span, "expected one CLIENT span of productpage.default named "
                     "'details.default.svc.cluster.local:9080/*', found 2"),
    (reparent_details_server, "productpage -> details: the SERVER span's parentId"),
    (reparent_reviews_client, "productpage -> reviews: the CLIENT span's parentId 00000000000000aa is not"),
    (split_trace_id, "spans carry 2 different trace ids"),
    (split_trace_id, "reviews -> ratings: CLIENT and SERVER spans have different trace ids"),
    (server_starts_before_client, "productpage -> details: the SERVER span"),
    (server_ends_after_client, "does not lie within the CLIENT span"),
    (rename_span, "expected one SERVER span of details.default named 'details.default.svc.cluster.local:9080/*'"),
    (rename_span, "unexpected span SERVER details.default 'details:9080/*'"),
    (wrong_service_name, "expected one SERVER span of details.default"),
    (drop_tag, "missing tags peer.address"),
    (wrong_upstream_cluster, "tag upstream_cluster='outbound|9080||details', expected "
                             "'outbound|9080||details.default.svc.cluster.local'"),
    (error_status, "tag http.status_code='503', expected '200'"),
    (error_status, "tag response_flags='UF', expected '-'"),
    (error_status, "tagged error='true'"),
    (two_roots, "expected exactly one root span (no parentId), found 2"),
    (duplicate_id, "is used by 2 spans"),
    (unknown_reviews_version, "istio.canonical_revision ['v9']"),
    (other_request_id, "different x-request-ids"),
    (zero_duration, "duration 0 is not positive"),
])
def test_each_problem_is_named(breaks: Callable[[list[Span]], None], expected: str) -> None:
    spans = bookinfo_trace("v2")
    breaks(spans)
    problems = check_bookinfo_trace(spans)
    assert any(expected in problem for problem in problems), problems


def test_empty_and_missing_reviews() -> None:
    assert check_bookinfo_trace([]) == ["the trace has no spans"]
    spans = [span for span in bookinfo_trace("v1") if not span.name.startswith("reviews.")]
    assert any("no SERVER span of reviews" in problem for problem in check_bookinfo_trace(spans))


def test_v1_trace_with_a_ratings_call_is_not_complete() -> None:
    v2 = bookinfo_trace("v2")
    find(v2, "SERVER", "reviews").tags["istio.canonical_revision"] = "v1"
    problems = check_bookinfo_trace(v2)
    assert "expected 5 spans (reviews v1 answered), got 7" in problems
    assert sum("unexpected span" in problem for problem in problems) == 2


def test_summarize_counts_complete_traces_by_version() -> None:
    broken = bookinfo_trace("v3")
    broken.pop()
    traces = [inspect_bookinfo_trace(spans) for spans in
              (bookinfo_trace("v1"), bookinfo_trace("v2"), bookinfo_trace("v2"), broken)]
    assert summarize(traces) == {"v1": 1, "v2": 2}
