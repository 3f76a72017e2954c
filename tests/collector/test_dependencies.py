"""Dependency links: one per RPC whether one or both sides reported, errors from either side."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace

import aiohttp
import pytest
from collector_samples import NOW_US, bookinfo_trace, rpc, span, trace_id

from tracemesh_collector import RunningCollector, dependency_links, zipkin_api
from tracemesh_collector.dependencies import DependencyLink, link_traces
from tracemesh_collector.store import SpanStore
from tracemesh_sidecar.spans.model import Endpoint

MINUTE = 60_000_000


def test_bookinfo_traces_count_each_rpc_once() -> None:
    traces = [bookinfo_trace(trace_id(1), NOW_US), bookinfo_trace(trace_id(2), NOW_US, with_ratings=False),
              bookinfo_trace(trace_id(3), NOW_US, ratings_status="503")]
    assert link_traces(traces) == [
        DependencyLink("productpage.default", "details.default", 3, 0),
        DependencyLink("productpage.default", "reviews.default", 3, 0),
        DependencyLink("reviews.default", "ratings.default", 2, 1),
    ]


def test_an_error_on_the_client_side_only_counts() -> None:
    client, server = rpc(trace_id(1), None, "a.default", "b.default", NOW_US, 1000)
    client.tags["error"] = "true"
    assert link_traces([[client, server]]) == [DependencyLink("a.default", "b.default", 1, 1)]


def test_a_callee_that_reports_nothing_is_linked_from_the_client_span() -> None:
    client, _ = rpc(trace_id(1), None, "a.default", "mysql.default", NOW_US, 1000)
    assert link_traces([[client]]) == [DependencyLink("a.default", "mysql.default", 1, 0)]


def test_a_client_span_without_a_remote_service_and_no_server_makes_no_link() -> None:
    client, _ = rpc(trace_id(1), None, "a.default", "b.default", NOW_US, 1000)
    assert link_traces([[replace(client, remote_endpoint=Endpoint(ipv4="10.0.0.9"))]]) == []


def test_a_caller_that_reports_nothing_is_known_from_the_servers_remote_endpoint() -> None:
    root = span(trace_id(1), "00000000000000a1", None, "productpage.default", "x", "SERVER", NOW_US, 10,
                remote="istio-ingressgateway.istio-system")
    assert link_traces([[root]]) == [DependencyLink("istio-ingressgateway.istio-system", "productpage.default", 1, 0)]


def test_zipkin_shared_spans_count_once() -> None:
    client = span(trace_id(1), "00000000000000a1", None, "a.default", "x", "CLIENT", NOW_US, 10, remote="b.default")
    server = replace(client, kind="SERVER", local_endpoint=Endpoint("b.default"), remote_endpoint=None, shared=True)
    assert link_traces([[client, server]]) == [DependencyLink("a.default", "b.default", 1, 0)]


def test_local_spans_make_no_links() -> None:
    local = span(trace_id(1), "00000000000000a1", None, "a.default", "compute", None, NOW_US, 10)
    assert link_traces([[local]]) == []


def test_the_store_links_only_traces_inside_the_window() -> None:
    store = SpanStore()
    store.add(bookinfo_trace(trace_id(1), NOW_US - 10 * MINUTE))
    store.add(bookinfo_trace(trace_id(2), NOW_US - MINUTE, with_ratings=False))
    assert [link.call_count for link in store.dependencies(NOW_US, 5 * MINUTE)] == [1, 1]
    assert [link.call_count for link in store.dependencies(NOW_US, 20 * MINUTE)] == [2, 2, 1]


def test_traces_counted_a_slice_at_a_time_link_as_counted_at_once() -> None:
    traces = [bookinfo_trace(trace_id(number), NOW_US - number * 1000) for number in range(10)]
    sliced, whole = SpanStore(), SpanStore()
    for spans in traces:
        sliced.add(copy.deepcopy(spans))
        whole.add(spans)
    calls = 1
    while not sliced.count_dependencies(3):
        calls += 1
    assert calls == 4  # 10 changed traces, 3 at a time
    assert sliced.dependencies(NOW_US, 5 * MINUTE) == whole.dependencies(NOW_US, 5 * MINUTE) == link_traces(traces)


async def test_the_collector_serves_other_requests_between_two_slices_of_a_count(
        collector: RunningCollector, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dependency_links, "SLICE", 1)
    traces = [bookinfo_trace(trace_id(number), NOW_US - number * 1000) for number in range(140)]
    for spans in traces:
        collector.store.add(spans)
    counting = asyncio.Event()

    class CountsAndTells:  # the store, saying when a count starts (a compiled SpanStore takes no patched method)
        def count_dependencies(self, budget: int) -> bool:
            counting.set()
            return collector.store.count_dependencies(budget)

        def dependencies(self, end_us: int, lookback_us: int) -> list[DependencyLink]:
            return collector.store.dependencies(end_us, lookback_us)

    links_of = dependency_links.dependency_links
    monkeypatch.setattr(zipkin_api, "dependency_links",
                        lambda store, end_us, lookback_us: links_of(CountsAndTells(), end_us, lookback_us))

    async def dependencies() -> list[dict[str, object]]:
        url = f"{collector.zipkin_url}/api/v2/dependencies?endTs={NOW_US // 1000}&lookback=300000"
        async with http.get(url) as response:
            links: list[dict[str, object]] = await response.json()
            return links

    asked = asyncio.create_task(dependencies())
    started = asyncio.create_task(counting.wait())
    await asyncio.wait([started, asked], return_when=asyncio.FIRST_COMPLETED)
    assert counting.is_set(), "the dependencies were counted in one go"
    async with http.get(f"{collector.zipkin_url}/health") as response:
        assert response.status == 200
    assert not asked.done()  # 140 traces, one a turn: still counting when /health was answered
    assert await asked == [{"parent": link.parent, "child": link.child, "callCount": link.call_count,
                            "errorCount": link.error_count} for link in link_traces(traces)]
