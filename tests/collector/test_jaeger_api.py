"""The Jaeger query API on its own port, called the way the Jaeger UI calls it."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from collector_samples import NOW_US, bookinfo_trace, trace_id

from tracemesh_collector import RunningCollector
from tracemesh_collector.jaeger_json import trace_from_jaeger

MINUTE = 60_000_000


@pytest.fixture
def stored(collector: RunningCollector) -> RunningCollector:
    """1: reviews v1 10 min ago; 2: v2 5 min ago; 3: ratings answering 503, 1 min ago."""
    collector.store.add(bookinfo_trace(trace_id(1), NOW_US - 10 * MINUTE, with_ratings=False))
    collector.store.add(bookinfo_trace(trace_id(2), NOW_US - 5 * MINUTE))
    collector.store.add(bookinfo_trace(trace_id(3), NOW_US - MINUTE, ratings_status="503"))
    return collector


async def get(http: aiohttp.ClientSession, collector: RunningCollector, path: str,
              query: list[tuple[str, str]] | dict[str, str] | None = None) -> tuple[int, Any]:
    async with http.get(collector.query_url + path, params=query or {}) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


def data(body: dict[str, Any]) -> Any:
    assert body.keys() == {"data", "total", "limit", "offset", "errors"}
    assert (body["total"], body["limit"], body["offset"], body["errors"]) == (len(body["data"]), 0, 0, None)
    return body["data"]


async def test_services_and_operations(http: aiohttp.ClientSession, stored: RunningCollector) -> None:
    status, body = await get(http, stored, "/api/services")
    assert (status, data(body)) == (200, ["details.default", "productpage.default", "ratings.default",
                                          "reviews.default"])
    _, body = await get(http, stored, "/api/services/reviews.default/operations")
    assert data(body) == ["ratings.default.svc.cluster.local:9080/*", "reviews.default.svc.cluster.local:9080/*"]
    _, body = await get(http, stored, "/api/operations", {"service": "reviews.default"})
    assert data(body) == [{"name": "ratings.default.svc.cluster.local:9080/*", "spanKind": "client"},
                          {"name": "reviews.default.svc.cluster.local:9080/*", "spanKind": "server"}]
    _, body = await get(http, stored, "/api/operations", {"service": "reviews.default", "spanKind": "server"})
    assert data(body) == [{"name": "reviews.default.svc.cluster.local:9080/*", "spanKind": "server"}]


async def test_trace_search_answers_jaeger_traces(http: aiohttp.ClientSession, stored: RunningCollector) -> None:
    status, body = await get(http, stored, "/api/traces", {"service": "productpage.default"})
    assert status == 200
    traces = data(body)
    assert [trace["traceID"] for trace in traces] == [trace_id(3), trace_id(2), trace_id(1)]
    newest = traces[0]
    assert len(newest["spans"]) == 7
    assert {process["serviceName"] for process in newest["processes"].values()} == {
        "productpage.default", "details.default", "reviews.default", "ratings.default"}
    assert sorted(span.id for span in trace_from_jaeger(newest)) == sorted(
        span.id for span in stored.store.get_trace(trace_id(3)))


@pytest.mark.parametrize(("query", "expected"), [
    ({"service": "ratings.default"}, [3, 2]),
    ({"service": "productpage.default", "limit": "2"}, [3, 2]),
    ({"service": "reviews.default", "operation": "ratings.default.svc.cluster.local:9080/*"}, [3, 2]),
    ({"service": "productpage.default", "operation": "ratings.default.svc.cluster.local:9080/*"}, []),
    ({"service": "ratings.default", "tags": json.dumps({"error": "true"})}, [3]),
    ({"service": "productpage.default", "tags": json.dumps({"error": "true"})}, []),
    ([("service", "reviews.default"), ("tag", "http.status_code:503"), ("tag", "error:true")], [3]),
    ({"service": "ratings.default", "minDuration": "3.8ms", "maxDuration": "3800us"}, [3, 2]),
    # what the Jaeger UI sends for an unconstrained search
    ({"service": "productpage.default", "operation": "", "tags": "", "minDuration": "", "maxDuration": "",
      "limit": "20", "lookback": "1h", "start": str(NOW_US - 60 * MINUTE), "end": str(NOW_US)}, [3, 2, 1]),
    ({"service": "productpage.default", "minDuration": "20.001ms"}, []),
    ({"service": "productpage.default", "start": str(NOW_US - 6 * MINUTE), "end": str(NOW_US - 2 * MINUTE)}, [2]),
    ({"service": "productpage.default", "end": str(NOW_US - 2 * MINUTE)}, [2, 1]),
    ({"service": "productpage.default", "lookback": "2m"}, [3]),
    ({"service": "productpage.default", "lookback": "custom", "start": str(NOW_US - 2 * MINUTE)}, [3]),
    ([("traceID", trace_id(1)), ("traceID", trace_id(3)[16:])], [1, 3]),
])
async def test_trace_search_filters(http: aiohttp.ClientSession, stored: RunningCollector,
                                    query: dict[str, str] | list[tuple[str, str]], expected: list[int]) -> None:
    status, body = await get(http, stored, "/api/traces", query)
    assert status == 200
    assert [trace["traceID"] for trace in data(body)] == [trace_id(n) for n in expected]


async def test_one_trace(http: aiohttp.ClientSession, stored: RunningCollector) -> None:
    status, body = await get(http, stored, f"/api/traces/{trace_id(2)}")
    assert status == 200
    [trace] = data(body)
    assert (trace["traceID"], len(trace["spans"])) == (trace_id(2), 7)
    status, body = await get(http, stored, f"/api/traces/{trace_id(9)}")
    assert (status, body) == (404, {"data": None, "total": 0, "limit": 0, "offset": 0,
                                    "errors": [{"code": 404, "msg": f"trace {trace_id(9)} not found"}]})


async def test_dependencies(http: aiohttp.ClientSession, stored: RunningCollector) -> None:
    _, body = await get(http, stored, "/api/dependencies", {"endTs": str(NOW_US // 1000)})
    assert data(body) == [
        {"parent": "productpage.default", "child": "details.default", "callCount": 3},
        {"parent": "productpage.default", "child": "reviews.default", "callCount": 3},
        {"parent": "reviews.default", "child": "ratings.default", "callCount": 2},
    ]


@pytest.mark.parametrize(("path", "query", "message"), [
    ("/api/traces", {}, "query parameter 'service': is required"),
    ("/api/operations", {}, "query parameter 'service': is required"),
    ("/api/traces", {"service": "a", "limit": "many"}, "'limit': must be a positive integer"),
    ("/api/traces", {"service": "a", "start": "now"}, "'start': must be a positive integer of epoch microseconds"),
    ("/api/traces", {"service": "a", "start": str(NOW_US), "end": str(NOW_US - 1)}, "'start': must not be after end"),
    ("/api/traces", {"service": "a", "minDuration": "fast"}, "'minDuration': 'fast' is not a duration"),
    ("/api/traces", {"service": "a", "minDuration": "2s", "maxDuration": "1s"}, "'maxDuration': must be at least"),
    ("/api/traces", {"service": "a", "lookback": "1 hour"}, "'lookback': '1 hour' is not a duration"),
    ("/api/traces", {"service": "a", "tags": "error=true"}, "'tags': must be a JSON object of strings"),
    ("/api/traces", {"service": "a", "tag": "error"}, "'tag': must be key:value"),
    ("/api/traces", {"traceID": "xyz"}, "'traceID': must be 16 or 32 hex characters"),
    ("/api/traces/xyz", {}, "'traceID': must be 16 or 32 hex characters"),
    ("/api/dependencies", {"endTs": "x"}, "'endTs': must be a positive integer of epoch milliseconds"),
])
async def test_bad_parameters_get_a_400_envelope_naming_them(http: aiohttp.ClientSession, collector: RunningCollector,
                                                            path: str, query: dict[str, str], message: str) -> None:
    status, body = await get(http, collector, path, query)
    assert status == 400
    assert body["data"] is None
    [error] = body["errors"]
    assert error["code"] == 400
    assert message in error["msg"]


async def test_the_query_port_reads_zipkins_api_for_the_trace_ui_but_takes_no_spans(
        http: aiohttp.ClientSession, collector: RunningCollector) -> None:
    """The trace UI at the port's root reads Zipkin's v2 query API beside Jaeger's; ingest stays on its own ports."""
    async with http.get(f"{collector.query_url}/api/v2/services") as response:
        assert response.status == 200
    async with http.post(f"{collector.query_url}/api/v2/spans", data=b"[]",
                         headers={"Content-Type": "application/json"}) as response:
        assert response.status == 405
    async with http.post(f"{collector.query_url}/v1/traces", data=b"{}",
                         headers={"Content-Type": "application/json"}) as response:
        assert response.status == 404
