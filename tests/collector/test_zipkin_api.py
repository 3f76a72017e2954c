"""The collector's Zipkin v2 API over HTTP; requests and responses checked against the official spec."""

from __future__ import annotations

import gzip
import json
from typing import Any

import jsonschema
import pytest
from collector_samples import NOW_US, bookinfo_trace, trace_id
from zipkin_api_spec import ZipkinApiSpec
from zipkin_client import ZipkinClient, as_dicts

from tracemesh_collector import RunningCollector
from tracemesh_sidecar.spans import zipkin_json, zipkin_proto
from tracemesh_sidecar.spans.model import Span

MINUTE = 60_000_000
MS = 1000


def unordered(traces: Any) -> list[list[str]]:
    return [sorted(span["id"] for span in trace) for trace in traces]


async def test_a_json_batch_is_accepted_and_served_back(zipkin: ZipkinClient) -> None:
    trace = bookinfo_trace(trace_id(1), NOW_US - MINUTE)
    assert await zipkin.post_spans(trace) == (202, "")
    status, body = await zipkin.get("/api/v2/traces", serviceName="productpage.default")
    assert status == 200
    assert body == as_dicts([trace])


async def test_a_proto3_batch_is_accepted(zipkin: ZipkinClient) -> None:
    trace = bookinfo_trace(trace_id(1), NOW_US - MINUTE)
    assert await zipkin.post(zipkin_proto.encode_spans(trace), "application/x-protobuf") == (202, "")
    assert await zipkin.get(f"/api/v2/trace/{trace_id(1)}") == (200, as_dicts([trace])[0])


async def test_a_gzipped_batch_is_accepted(zipkin: ZipkinClient) -> None:
    body = gzip.compress(zipkin_json.encode_spans(bookinfo_trace(trace_id(1), NOW_US - MINUTE)))
    assert await zipkin.post(body, "application/json", **{"Content-Encoding": "gzip"}) == (202, "")
    status, trace = await zipkin.get(f"/api/v2/trace/{trace_id(1)}")
    assert (status, len(trace)) == (200, 7)


async def test_a_retried_batch_is_stored_once(zipkin: ZipkinClient, collector: RunningCollector) -> None:
    trace = bookinfo_trace(trace_id(1), NOW_US - MINUTE)
    await zipkin.post_spans(trace)
    await zipkin.post_spans(trace)
    assert collector.store.span_count == 7


GOOD = zipkin_json.span_to_zipkin_dict(bookinfo_trace(trace_id(2), NOW_US)[0])


@pytest.mark.parametrize(("body", "content_type", "headers", "named"), [
    (b"[{", "application/json", {}, "body: is not valid JSON"),
    (b'{"traceId": "5af7183fb1d4cf5f"}', "application/json", {}, "body: must be a JSON array"),
    (b'[%s, {"traceId": "xyz", "id": "352bff9a74ca9ad2"}]' % json.dumps(GOOD).encode(),
     "application/json", {}, "span[1].traceId"),
    (b'[{"traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2", "kind": "LOCAL"}]', "application/json", {},
     "span[0].kind"),
    (b'[{"traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2", "duration": -1}]', "application/json", {},
     "span[0].duration"),
    (b"\x0a\x05garbage", "application/x-protobuf", {}, "body: is not a Zipkin proto3 ListOfSpans"),
    (b"\x0a\x02\x0a\x00", "application/x-protobuf", {}, "span[0].trace_id: must be 8 or 16 bytes"),
    (b"not gzip at all", "application/json", {"Content-Encoding": "gzip"}, "body: is not valid 'gzip' data"),
])
async def test_a_malformed_batch_is_refused_whole_and_nothing_stored_is_lost(
        zipkin: ZipkinClient, collector: RunningCollector, body: bytes, content_type: str, headers: dict[str, str],
        named: str) -> None:
    await zipkin.post_spans(bookinfo_trace(trace_id(1), NOW_US - MINUTE))
    status, message = await zipkin.post(body, content_type, **headers)
    assert status == 400
    assert message.startswith("malformed spans, none stored: ")
    assert named in message
    assert collector.store.span_count == 7
    assert await zipkin.get(f"/api/v2/trace/{trace_id(2)}") == (404, f"trace {trace_id(2)} not found")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-thrift", "", "application/json; charset=utf-8"])
async def test_v2_json_is_read_whatever_the_media_type(zipkin: ZipkinClient, content_type: str) -> None:
    """ZipkinHttpCollector's unannotated /api/v2/spans route reads JSON_V2 for any Content-Type."""
    trace = bookinfo_trace(trace_id(1), NOW_US - MINUTE)
    assert await zipkin.post(zipkin_json.encode_spans(trace), content_type) == (202, "")
    assert await zipkin.get(f"/api/v2/trace/{trace_id(1)}") == (200, as_dicts([trace])[0])


async def test_services_span_names_and_remote_services(zipkin: ZipkinClient) -> None:
    await zipkin.post_spans(bookinfo_trace(trace_id(1), NOW_US - MINUTE))
    assert await zipkin.get("/api/v2/services") == (
        200, ["details.default", "productpage.default", "ratings.default", "reviews.default"])
    assert await zipkin.get("/api/v2/spans", serviceName="reviews.default") == (
        200, ["ratings.default.svc.cluster.local:9080/*", "reviews.default.svc.cluster.local:9080/*"])
    assert await zipkin.get("/api/v2/remoteServices", in_spec=False, serviceName="productpage.default") == (
        200, ["details.default", "reviews.default"])


async def post_three_traces(zipkin: ZipkinClient) -> None:
    await zipkin.post_spans(bookinfo_trace(trace_id(1), NOW_US - 10 * MINUTE, with_ratings=False))
    await zipkin.post_spans(bookinfo_trace(trace_id(2), NOW_US - 5 * MINUTE))
    await zipkin.post_spans(bookinfo_trace(trace_id(3), NOW_US - MINUTE, ratings_status="503"))


@pytest.mark.parametrize(("query", "expected"), [
    ({}, [3, 2, 1]),
    ({"limit": "1"}, [3]),
    ({"limit": str(10**30)}, [3, 2, 1]),
    ({"serviceName": "ratings.default"}, [3, 2]),
    ({"spanName": "ratings.default.svc.cluster.local:9080/*"}, [3, 2]),
    ({"spanName": "all"}, [3, 2, 1]),
    ({"annotationQuery": "error and http.status_code=503"}, [3]),
    ({"serviceName": "ratings.default", "minDuration": "3800", "maxDuration": "3800"}, [3, 2]),
    ({"minDuration": "20001"}, []),
    ({"endTs": str((NOW_US - 2 * MINUTE) // MS)}, [2, 1]),
    ({"endTs": str((NOW_US - 2 * MINUTE) // MS), "lookback": str(7 * MINUTE // MS)}, [2]),
    ({"lookback": str(2 * MINUTE // MS)}, [3]),
])
async def test_trace_search(zipkin: ZipkinClient, query: dict[str, str], expected: list[int]) -> None:
    await post_three_traces(zipkin)
    status, traces = await zipkin.get("/api/v2/traces", **query)
    assert status == 200
    assert [trace[0]["traceId"] for trace in traces] == [trace_id(n) for n in expected]


async def test_trace_search_by_remote_service(zipkin: ZipkinClient) -> None:
    await post_three_traces(zipkin)
    _, traces = await zipkin.get("/api/v2/traces", in_spec=False, serviceName="reviews.default",
                                      remoteServiceName="ratings.default")
    assert [trace[0]["traceId"] for trace in traces] == [trace_id(3), trace_id(2)]


@pytest.mark.parametrize(("path", "query", "message"), [
    ("/api/v2/spans", {}, "query parameter 'serviceName': is required"),
    ("/api/v2/remoteServices", {}, "query parameter 'serviceName': is required"),
    ("/api/v2/traces", {"limit": "ten"}, "query parameter 'limit': must be a positive integer, got 'ten'"),
    ("/api/v2/traces", {"limit": "0"}, "query parameter 'limit': must be a positive integer, got '0'"),
    ("/api/v2/traces", {"endTs": "yesterday"}, "'endTs': must be a positive integer of epoch milliseconds"),
    ("/api/v2/traces", {"lookback": "-5"}, "'lookback': must be a positive integer of milliseconds"),
    ("/api/v2/traces", {"minDuration": "1.5"}, "'minDuration': must be a positive integer of microseconds"),
    ("/api/v2/traces", {"maxDuration": "100"}, "'maxDuration': is only valid with minDuration"),
    ("/api/v2/traces", {"minDuration": "100", "maxDuration": "99"}, "'maxDuration': must be at least minDuration"),
    ("/api/v2/trace/not-hex", {}, "query parameter 'traceId': must be 16 or 32 hex characters"),
    ("/api/v2/traceMany", {}, "'traceIds': is required"),
    ("/api/v2/traceMany", {"traceIds": trace_id(1)}, "'traceIds': needs at least two different trace ids"),
    ("/api/v2/traceMany", {"traceIds": f"{trace_id(1)},{trace_id(1)}"}, "needs at least two different"),
    ("/api/v2/traceMany", {"traceIds": f"{trace_id(1)},zz"}, "'traceIds': must be 16 or 32 hex characters"),
    ("/api/v2/dependencies", {}, "'endTs': is required"),
    ("/api/v2/autocompleteValues", {}, "'key': is required"),
])
async def test_bad_parameters_get_400_naming_them(zipkin: ZipkinClient, path: str, query: dict[str, str],
                                                  message: str) -> None:
    status, body = await zipkin.get(path, in_spec=False, **query)
    assert status == 400
    assert message in body


async def test_one_trace_by_id(zipkin: ZipkinClient) -> None:
    long_id = "4e441824ec2b6a44ffdc9bb9a6453df3"
    await zipkin.post_spans(bookinfo_trace(long_id, NOW_US - MINUTE))
    status, spans = await zipkin.get(f"/api/v2/trace/{long_id}")
    assert (status, len(spans)) == (200, 7)
    status, spans = await zipkin.get(f"/api/v2/trace/{long_id[16:]}")  # the low half, as Zipkin allows
    assert (status, len(spans)) == (200, 7)
    assert (await zipkin.get(f"/api/v2/trace/{trace_id(9)}"))[0] == 404


async def test_trace_many(zipkin: ZipkinClient) -> None:
    await post_three_traces(zipkin)
    status, traces = await zipkin.get("/api/v2/traceMany", traceIds=f"{trace_id(1)},{trace_id(3)},{trace_id(9)}")
    assert status == 200
    assert sorted(trace[0]["traceId"] for trace in traces) == [trace_id(1), trace_id(3)]


async def test_dependencies(zipkin: ZipkinClient) -> None:
    await post_three_traces(zipkin)
    status, links = await zipkin.get("/api/v2/dependencies", endTs=str(NOW_US // MS))
    assert status == 200
    assert links == [
        {"parent": "productpage.default", "child": "details.default", "callCount": 3, "errorCount": 0},
        {"parent": "productpage.default", "child": "reviews.default", "callCount": 3, "errorCount": 0},
        {"parent": "reviews.default", "child": "ratings.default", "callCount": 2, "errorCount": 1},
    ]
    status, links = await zipkin.get("/api/v2/dependencies", endTs=str(NOW_US // MS), lookback=str(2 * MINUTE // MS))
    assert [link["callCount"] for link in links] == [1, 1, 1]


async def test_autocomplete_offers_no_keys(zipkin: ZipkinClient) -> None:
    await zipkin.post_spans(bookinfo_trace(trace_id(1), NOW_US))
    assert await zipkin.get("/api/v2/autocompleteKeys") == (200, [])
    assert await zipkin.get("/api/v2/autocompleteValues", key="http.method") == (200, [])


async def test_health_and_index(zipkin: ZipkinClient, collector: RunningCollector) -> None:
    await zipkin.post_spans(bookinfo_trace(trace_id(1), NOW_US))
    status, health = await zipkin.get("/health", in_spec=False)
    assert (status, health) == (200, {"status": "UP", "spans": 7, "traces": 1, "maxSpans": 1000,
                                      "bytes": collector.store.byte_count, "maxBytes": collector.store.max_bytes})
    assert health["bytes"] > 7 * 400
    status, page = await zipkin.get("/", in_spec=False)
    assert status == 200
    for where in (f"{collector.zipkin_url}/api/v2/services", f"{collector.otlp_url}/v1/traces",
                  f"{collector.query_url}/api/services",
                  f"{collector.otlp_grpc_target}/opentelemetry.proto.collector.trace.v1.TraceService/Export"):
        assert where in page


def test_the_spec_checker_catches_a_response_that_breaks_the_spec() -> None:
    """Guards the checks above: they would fail on a wrongly shaped answer."""
    spec = ZipkinApiSpec.load()
    good: list[list[dict[str, Any]]] = as_dicts([bookinfo_trace(trace_id(1), NOW_US)])
    spec.check_response("get", "/api/v2/traces", 200, good)
    broken: list[Span] | Any = [[{**good[0][0], "kind": "INTERNAL"}]]
    with pytest.raises(jsonschema.ValidationError):
        spec.check_response("get", "/api/v2/traces", 200, broken)
    with pytest.raises(jsonschema.ValidationError):
        spec.check_response("get", "/api/v2/dependencies", 200, [{"parent": "a", "child": "b"}])
    with pytest.raises(AssertionError, match="not in the spec"):
        spec.check_request("get", "/api/v2/traces", {"serviceNam": "x"})
