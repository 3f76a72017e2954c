"""The collector behaves as zipkin-server where a real Zipkin client or UI would notice: shared spans, v1 ingest,
the UI's config and base path (issue 10's acceptance)."""

from __future__ import annotations

import gzip
import json
from typing import Any

import aiohttp
from collector_samples import NOW_US, bookinfo_trace, trace_id
from test_zipkin_v1 import V1_JSON_CLIENT_AND_SERVER, thrift_client_and_server
from zipkin_client import ZipkinClient, as_dicts

from tracemesh_collector import RunningCollector
from tracemesh_sidecar.spans import zipkin_json
from tracemesh_sidecar.spans.model import Endpoint, Span

MINUTE = 60_000_000


def shared_server_trace() -> list[Span]:
    """Bookinfo's trace plus a Zipkin-instrumented `mysql` that answers reviews' CLIENT span with a shared SERVER
    span of the same id, as Brave and other B3 tracers do by default."""
    trace = bookinfo_trace(trace_id(1), NOW_US - MINUTE)
    reviews_server = trace[4]
    client = Span(trace_id=trace_id(1), id="00000000000000c1", parent_id=reviews_server.id, name="query",
                  kind="CLIENT", timestamp=reviews_server.timestamp + 500, duration=900,
                  local_endpoint=Endpoint("reviews.default", "10.244.0.5"),
                  remote_endpoint=Endpoint("mysql.default", "10.244.0.9", None, 3306))
    server = Span(trace_id=trace_id(1), id=client.id, parent_id=reviews_server.id, name="query", kind="SERVER",
                  timestamp=client.timestamp + 100, duration=700,
                  local_endpoint=Endpoint("mysql.default", "10.244.0.9"), shared=True)
    # and the reviews application's own tracer sharing the id of the sidecar's SERVER span (same kind, too)
    app = Span(trace_id=trace_id(1), id=reviews_server.id, parent_id=reviews_server.parent_id, name="get /reviews",
               kind="SERVER", timestamp=reviews_server.timestamp + 50, duration=reviews_server.duration - 100,
               local_endpoint=Endpoint("reviews-app", "10.244.0.5"), shared=True)
    return [*trace, client, server, app]


async def test_a_shared_server_span_stays_beside_the_callers_client_span(
        zipkin: ZipkinClient, http: aiohttp.ClientSession, collector: RunningCollector) -> None:
    trace = shared_server_trace()
    assert await zipkin.post_spans(trace) == (202, "")
    status, served = await zipkin.get(f"/api/v2/trace/{trace_id(1)}")
    assert status == 200 and len(served) == len(trace) == 10
    by_service = {(span["localEndpoint"]["serviceName"], span.get("kind")): span for span in served
                  if span["id"] == "00000000000000c1"}
    assert by_service.keys() == {("reviews.default", "CLIENT"), ("mysql.default", "SERVER")}
    assert by_service[("mysql.default", "SERVER")]["shared"] is True
    status, services = await zipkin.get("/api/v2/services")
    assert {"mysql.default", "reviews.default", "reviews-app"} <= set(services)
    reviews_id = trace[4].id
    assert sorted((span["localEndpoint"]["serviceName"], span.get("shared", False)) for span in served
                  if span["id"] == reviews_id) == [("reviews-app", True), ("reviews.default", False)]
    async with http.get(f"{collector.query_url}/api/traces/{trace_id(1)}") as response:
        [jaeger_trace] = (await response.json())["data"]
    assert len(jaeger_trace["spans"]) == 10
    service_of = {span["spanID"]: jaeger_trace["processes"][span["processID"]]["serviceName"]
                  for span in jaeger_trace["spans"] if span["processID"]}
    assert service_of["00000000000000c1"] == "reviews.default"
    # as Jaeger's query service does, the shared SERVER span gets its own id, a child of the CLIENT span
    [mysql] = [span for span in jaeger_trace["spans"] if service_of[span["spanID"]] == "mysql.default"]
    assert mysql["spanID"] != "00000000000000c1"
    assert mysql["references"] == [{"refType": "CHILD_OF", "traceID": trace_id(1), "spanID": "00000000000000c1"}]
    async with http.get(f"{collector.query_url}/api/services") as response:
        assert "mysql.default" in (await response.json())["data"]


async def test_traces_come_back_in_zipkins_order(zipkin: ZipkinClient) -> None:
    """Trace.merge's order: span id, then the unshared (CLIENT first) before the shared."""
    trace = shared_server_trace()
    await zipkin.post_spans(list(reversed(trace)))
    _, served = await zipkin.get(f"/api/v2/trace/{trace_id(1)}")
    assert [span["id"] for span in served] == sorted(span.id for span in trace)
    shared_pair = [span.get("kind") for span in served if span["id"] == "00000000000000c1"]
    assert shared_pair == ["CLIENT", "SERVER"]
    same_kind_pair = [span.get("shared", False) for span in served if span["id"] == trace[4].id]
    assert same_kind_pair == [False, True]


async def test_partial_reports_of_one_span_are_served_merged(zipkin: ZipkinClient,
                                                             collector: RunningCollector) -> None:
    first, *rest = bookinfo_trace(trace_id(1), NOW_US - MINUTE)
    name_only = Span(trace_id=first.trace_id, id=first.id, name=first.name, kind=first.kind, timestamp=0, duration=0,
                     local_endpoint=first.local_endpoint)
    timing_only = Span(trace_id=first.trace_id, id=first.id, name="", kind=None, timestamp=first.timestamp,
                       duration=first.duration, local_endpoint=Endpoint(), tags=first.tags)
    await zipkin.post_spans([name_only, *rest])
    await zipkin.post_spans([timing_only])
    assert collector.store.span_count == 8  # both reports kept, as Zipkin's storage keeps them
    _, served = await zipkin.get(f"/api/v2/trace/{trace_id(1)}")
    assert len(served) == 7
    assert served == as_dicts([sorted([first, *rest], key=lambda span: span.id)])[0]


async def test_the_ui_config_is_zipkin_servers(http: aiohttp.ClientSession, collector: RunningCollector) -> None:
    """ITZipkinUiConfiguration.configJson and setsMaxAgeOnUiResources."""
    async with http.get(f"{collector.zipkin_url}/zipkin/config.json") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert response.headers["Cache-Control"] == "max-age=600"
        text = await response.text()
    assert text == (
        '{\n  "environment" : "",\n  "queryLimit" : 10,\n  "defaultLookback" : 900000,\n  "searchEnabled" : true,\n'
        '  "logsUrl" : null,\n  "supportUrl" : null,\n  "archivePostUrl" : null,\n  "archiveUrl" : null,\n'
        '  "dependency" : {\n    "enabled" : true,\n    "lowErrorRate" : 0.5,\n    "highErrorRate" : 0.75\n  }\n}')
    assert json.loads(text)["dependency"]["enabled"] is True


async def test_the_query_api_answers_under_the_ui_base_path(zipkin: ZipkinClient, http: aiohttp.ClientSession,
                                                            collector: RunningCollector) -> None:
    await zipkin.post_spans(bookinfo_trace(trace_id(1), NOW_US - MINUTE))
    for path in ("/api/v2/services", f"/api/v2/trace/{trace_id(1)}", "/api/v2/spans?serviceName=reviews.default"):
        async with http.get(collector.zipkin_url + path) as plain, \
                http.get(collector.zipkin_url + "/zipkin" + path) as under_ui:
            assert (under_ui.status, await under_ui.json()) == (plain.status, await plain.json()) != (200, [])


async def post_v1(http: aiohttp.ClientSession, collector: RunningCollector, body: bytes, content_type: str,
                  **headers: str) -> tuple[int, str]:
    async with http.post(f"{collector.zipkin_url}/api/v1/spans", data=body,
                         headers={"Content-Type": content_type, **headers}) as response:
        return response.status, await response.text()


async def test_v1_json_is_accepted_and_queryable_as_v2(zipkin: ZipkinClient, http: aiohttp.ClientSession,
                                                       collector: RunningCollector) -> None:
    body = json.dumps(V1_JSON_CLIENT_AND_SERVER).encode()
    assert await post_v1(http, collector, body, "application/json") == (202, "")
    status, trace = await zipkin.get("/api/v2/trace/0000000000000001")
    assert status == 200
    assert [(span["localEndpoint"]["serviceName"], span["kind"], span.get("shared", False)) for span in trace] == [
        ("frontend", "CLIENT", False), ("backend", "SERVER", True)]
    _, services = await zipkin.get("/api/v2/services")
    assert services == ["backend", "frontend"]


async def test_v1_thrift_and_gzipped_v1_json_are_accepted(zipkin: ZipkinClient, http: aiohttp.ClientSession,
                                                          collector: RunningCollector) -> None:
    assert await post_v1(http, collector, thrift_client_and_server(), "application/x-thrift") == (202, "")
    gzipped = gzip.compress(json.dumps(V1_JSON_CLIENT_AND_SERVER).encode())
    assert await post_v1(http, collector, gzipped, "text/plain", **{"Content-Encoding": "gzip"}) == (202, "")
    assert collector.store.span_count == 2  # the same two spans twice: the repeat adds nothing
    _, trace = await zipkin.get("/api/v2/trace/0000000000000001")
    assert len(trace) == 2


async def test_a_json_body_of_the_other_version_is_refused_naming_it(
        zipkin: ZipkinClient, http: aiohttp.ClientSession, collector: RunningCollector) -> None:
    """ZipkinHttpCollector.testForUnexpectedFormat, which keeps v1 and v2 from being misread as each other."""
    await zipkin.post_spans(bookinfo_trace(trace_id(2), NOW_US - MINUTE))
    v1_body = json.dumps(V1_JSON_CLIENT_AND_SERVER).encode()
    assert await zipkin.post(v1_body, "application/json") == (
        400, "Expected a JSON_V2 encoded list, but received: JSON_V1")
    v2_body = zipkin_json.encode_spans(bookinfo_trace(trace_id(1), NOW_US))
    assert await post_v1(http, collector, v2_body, "application/json") == (
        400, "Expected a JSON_V1 encoded list, but received: JSON_V2")
    assert collector.store.span_count == 7


async def test_an_empty_body_or_list_is_accepted_and_stores_nothing(zipkin: ZipkinClient,
                                                                    http: aiohttp.ClientSession,
                                                                    collector: RunningCollector) -> None:
    answers: list[Any] = [await zipkin.post(b"", "application/json"), await zipkin.post(b"[]", "application/json"),
                          await post_v1(http, collector, b"[]", "application/json")]
    assert answers == [(202, "")] * 3
    assert collector.store.span_count == 0
