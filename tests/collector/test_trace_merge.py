"""Merging a trace's reports as Zipkin does: the cases of openzipkin/zipkin's TraceTest, ported.

zipkin/src/test/java/zipkin2/internal/TraceTest.java (Apache-2.0, Copyright The OpenZipkin Authors).
Zipkin's one-letter ids ("a", "b") are written here as the 16-hex ids they stand for.
"""

from __future__ import annotations

from dataclasses import replace

from tracemesh_collector.trace_merge import merge_trace
from tracemesh_sidecar.spans.model import Annotation, Endpoint, Span, SpanKind


def hex_id(short: str) -> str:
    return short.rjust(16, "0") if len(short) < 16 else short


def span(trace: str, parent: str | None, id: str, kind: SpanKind | None, local: str | None, ip: str | None,
         shared: bool) -> Span:
    """TraceTest.span(traceId, parentId, id, kind, local, ip, shared)."""
    endpoint = Endpoint(service_name=local, ipv4=ip) if local is not None or ip is not None else Endpoint()
    return Span(trace_id=hex_id(trace), id=hex_id(id), parent_id=hex_id(parent) if parent else None, name="",
                kind=kind, timestamp=0, duration=0, local_endpoint=endpoint, shared=shared)


def same_spans(actual: list[Span], expected: list[Span]) -> bool:
    """containsExactlyInAnyOrder with field-by-field comparison."""
    key = repr
    return sorted(map(key, actual)) == sorted(map(key, expected))


def test_backfills_missing_parent_id_on_shared_span() -> None:
    trace = [span("a", None, "a", "SERVER", "frontend", None, False),
             span("a", "a", "b", "CLIENT", "frontend", None, False),
             span("a", None, "b", "SERVER", "backend", None, True)]  # the parent id was not propagated
    assert same_spans(merge_trace(trace), [span("a", None, "a", "SERVER", "frontend", None, False),
                                           span("a", "a", "b", "CLIENT", "frontend", None, False),
                                           span("a", "a", "b", "SERVER", "backend", None, True)])


def test_backfills_missing_shared_flag() -> None:
    trace = [span("a", None, "a", "SERVER", "frontend", None, False),
             span("a", "a", "b", "CLIENT", "frontend", "1.2.3.4", False),
             span("a", "a", "b", "SERVER", "backend", "5.6.7.8", False)]  # the shared flag was forgotten
    assert same_spans(merge_trace(trace), [span("a", None, "a", "SERVER", "frontend", None, False),
                                           span("a", "a", "b", "CLIENT", "frontend", "1.2.3.4", False),
                                           span("a", "a", "b", "SERVER", "backend", "5.6.7.8", True)])


def test_chooses_best_trace_id() -> None:
    long_id = "7180c278b62e8f6a216a2aea45d08fc9"
    trace = [span(long_id, None, "a", "SERVER", "frontend", None, False),
             span(long_id, "a", "b", "CLIENT", "frontend", None, False),
             span("216a2aea45d08fc9", "a", "b", "SERVER", "backend", None, True)]
    assert [merged.trace_id for merged in merge_trace(trace)] == [long_id] * 3


def test_merges_when_missing_endpoints() -> None:
    root = replace(span("a", None, "a", None, None, None, False), tags={"service": "frontend", "span.kind": "SERVER"})
    client = replace(span("a", "a", "b", None, None, None, False), timestamp=1,
                     tags={"service": "frontend", "span.kind": "CLIENT"})
    server = span("a", "a", "b", "SERVER", "backend", None, True)
    late = replace(span("a", "a", "b", None, None, None, False), duration=10)
    assert same_spans(merge_trace([root, client, server, late]), [root, replace(client, duration=10), server])


def test_doesnt_merge_shared_spans_on_different_ips() -> None:
    """A transparently retrying proxy: two servers accidentally share one id."""
    root = span("a", None, "a", "SERVER", "frontend", None, False)
    client = replace(span("a", "a", "b", "CLIENT", "frontend", None, False), timestamp=1,
                     annotations=[Annotation(3, "brave.flush")])
    server_1 = span("a", "a", "b", "SERVER", "backend", "1.2.3.4", True)
    server_2 = span("a", "a", "b", "SERVER", "backend", "1.2.3.5", True)
    late = replace(span("a", "a", "b", "CLIENT", "frontend", None, False), duration=10)
    assert same_spans(merge_trace([root, client, server_1, server_2, late]),
                      [root, replace(client, duration=10), server_1, server_2])


def test_puts_random_data_on_first_span_with_endpoint() -> None:
    root = span("a", None, "a", "SERVER", "frontend", None, False)
    client = span("a", "a", "b", "CLIENT", None, None, False)
    flush = replace(span("a", "a", "b", None, "frontend", None, False), timestamp=1,
                    annotations=[Annotation(3, "brave.flush")])
    server_1 = span("a", "a", "b", "SERVER", "backend", "1.2.3.4", True)
    server_2 = span("a", "a", "b", "SERVER", "backend", "1.2.3.5", True)
    late = replace(span("a", "a", "b", None, None, None, False), duration=10)
    expected_client = replace(span("a", "a", "b", "CLIENT", "frontend", None, False), timestamp=1, duration=10,
                              annotations=[Annotation(3, "brave.flush")])
    assert same_spans(merge_trace([root, client, flush, server_1, server_2, late]),
                      [root, expected_client, server_1, server_2])


def test_merges_incomplete_endpoints() -> None:
    trace = [span("a", None, "a", "SERVER", "frontend", None, False),
             span("a", "a", "b", "CLIENT", "frontend", None, False),
             span("a", "a", "b", "CLIENT", None, "1.2.3.4", False),
             span("a", "a", "b", "SERVER", None, "1.2.3.5", True),
             span("a", "a", "b", "SERVER", "backend", None, True)]
    assert same_spans(merge_trace(trace), [span("a", None, "a", "SERVER", "frontend", None, False),
                                           span("a", "a", "b", "CLIENT", "frontend", "1.2.3.4", False),
                                           span("a", "a", "b", "SERVER", "backend", "1.2.3.5", True)])


def test_works_when_missing_parent_span() -> None:
    trace = [span("a", "a", "b", "SERVER", "backend", "1.2.3.4", False),
             span("a", "a", "c", "SERVER", "backend", None, False)]
    assert merge_trace(trace) == trace


def test_cleanup_order_puts_the_client_first() -> None:
    """Some instrumentation does not mark servers shared."""
    server = span("a", "a", "b", "SERVER", "backend", "1.2.3.5", False)
    client = span("a", "a", "b", "CLIENT", "frontend", None, False)
    first, second = merge_trace([server, client])
    assert (first.kind, second.kind, second.shared) == ("CLIENT", "SERVER", True)


def test_cleanup_order_is_transitive() -> None:
    """cleanupComparator_transitiveKindComparison: 35 reports in an order that would expose a bad comparator."""
    template = span("a", None, "a", None, None, None, False)
    a, b = Endpoint(service_name="a"), Endpoint(service_name="b")
    trace = []
    for _ in range(7):
        trace += [replace(template, shared=True, local_endpoint=b), replace(template, kind="CLIENT", local_endpoint=b),
                  replace(template, local_endpoint=a), template, replace(template, kind="CLIENT", local_endpoint=a)]
    # all have id "a": neighbours whose shared flag and endpoint agree merge (the endpoint-less reports into
    # CLIENT b, the report before them), in Zipkin's sort order
    merged = merge_trace(trace)
    assert [(s.shared, s.kind, s.local_endpoint.service_name) for s in merged] == [
        (False, "CLIENT", "a"), (False, "CLIENT", "b"), (False, None, "a"), (True, None, "b")]


def test_a_shared_server_span_and_its_callers_client_span_stay_two() -> None:
    """The issue's case: same id, the server `shared` and of another service; only true duplicates merge."""
    client = replace(span("a", "a", "b", "CLIENT", "frontend", None, False), timestamp=10, duration=100)
    server = replace(span("a", "a", "b", "SERVER", "backend", None, True), timestamp=20, duration=50)
    assert merge_trace([server, client, client, server]) == [client, server]
