"""Spans received as OTLP come out of the Jaeger API as Jaeger's OTLP translator writes them (issue 10, part 2)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
from collector_samples import NOW_US
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from tracemesh_collector import RunningCollector
from tracemesh_collector.jaeger_adjust import deduplicate_client_server_span_ids
from tracemesh_sidecar.spans.model import Endpoint, Span, SpanKind

FIXTURES = Path(__file__).parent / "fixtures" / "jaeger"
TRACE_ID, SPAN_ID, PARENT_ID = "4e441824ec2b6a44" + "00f067aa0ba902b7" * 1, "00000000000000a1", "00000000000000a0"
LINKED_TRACE, LINKED_SPAN = "5af7183fb1d4cf5f00000000000000ff", "00000000000000b7"


async def post_otlp(http: aiohttp.ClientSession, collector: RunningCollector, body: bytes, content_type: str) -> None:
    async with http.post(f"{collector.otlp_url}/v1/traces", data=body,
                         headers={"Content-Type": content_type}) as response:
        assert response.status == 200, await response.text()


async def jaeger_trace(http: aiohttp.ClientSession, collector: RunningCollector, trace_id: str) -> dict[str, Any]:
    async with http.get(f"{collector.query_url}/api/traces/{trace_id}") as response:
        assert response.status == 200
        [trace] = (await response.json())["data"]
    return dict(trace)


async def test_jaegers_otlp2jaeger_fixture(http: aiohttp.ClientSession, collector: RunningCollector) -> None:
    """Jaeger's own fixture pair (http_handler_test.go). Its input repeats one span; a Zipkin-style store keeps
    a repeated report once, so the one span served is the fixture's first."""
    await post_otlp(http, collector, (FIXTURES / "otlp2jaeger-in.json").read_bytes(), "application/json")
    expected = json.loads((FIXTURES / "otlp2jaeger-out.json").read_text())["data"][0]
    served = await jaeger_trace(http, collector, expected["traceID"])
    assert served["spans"] == expected["spans"][:1]
    assert served["processes"] == expected["processes"]


def attribute(key: str, **value: Any) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def rich_request() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend([
        attribute("service.name", string_value="reviews"), attribute("k8s.pod.name", string_value="reviews-v2-abc"),
        attribute("host.cpu.count", int_value=4)])
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name, scope_spans.scope.version = "io.opentelemetry.spring", "2.1.0"
    span = scope_spans.spans.add()
    span.trace_id, span.span_id = bytes.fromhex(TRACE_ID), bytes.fromhex(SPAN_ID)
    span.parent_span_id = bytes.fromhex(PARENT_ID)
    span.name, span.kind = "GET /reviews/{id}", OtlpSpan.SPAN_KIND_SERVER
    span.start_time_unix_nano = NOW_US * 1000
    span.end_time_unix_nano = (NOW_US + 1500) * 1000
    span.trace_state = "rojo=00f067aa0ba902b7"
    span.flags = 0x101
    span.attributes.extend([
        attribute("http.status_code", int_value=503), attribute("retry.ratio", double_value=0.25),
        attribute("cache.hit", bool_value=False), attribute("http.method", string_value="GET"),
        attribute("payload.digest", bytes_value=b"\x00\xffdigest"),
        attribute("big.count", int_value=2**60)])
    span.status.code, span.status.message = Status.STATUS_CODE_ERROR, "upstream reset"
    event = span.events.add()
    event.time_unix_nano, event.name = (NOW_US + 700) * 1000, "exception"
    event.attributes.extend([attribute("exception.type", string_value="IOError"),
                             attribute("attempt", int_value=2)])
    link = span.links.add()
    link.trace_id, link.span_id = bytes.fromhex(LINKED_TRACE), bytes.fromhex(LINKED_SPAN)
    parent_link = span.links.add()
    parent_link.trace_id, parent_link.span_id = bytes.fromhex(TRACE_ID), bytes.fromhex(PARENT_ID)
    parent_link.attributes.append(attribute("opentracing.ref_type", string_value="follows_from"))
    internal = scope_spans.spans.add()
    internal.CopyFrom(span)
    internal.span_id, internal.parent_span_id = bytes.fromhex("00000000000000a2"), bytes.fromhex(SPAN_ID)
    internal.kind = OtlpSpan.SPAN_KIND_INTERNAL
    del internal.links[:], internal.events[:], internal.attributes[:]
    internal.status.Clear()
    internal.status.code = Status.STATUS_CODE_OK
    internal.trace_state, internal.flags = "", 0
    return request


def tag(key: str, type: str, value: Any) -> dict[str, Any]:
    return {"key": key, "type": type, "value": value}


async def test_types_resource_scope_status_links_and_events_are_kept(http: aiohttp.ClientSession,
                                                                     collector: RunningCollector) -> None:
    await post_otlp(http, collector, rich_request().SerializeToString(), "application/x-protobuf")
    trace = await jaeger_trace(http, collector, TRACE_ID)
    server, internal = sorted(trace["spans"], key=lambda span: span["spanID"])
    assert trace["processes"] == {server["processID"]: {"serviceName": "reviews", "tags": [
        tag("k8s.pod.name", "string", "reviews-v2-abc"), tag("host.cpu.count", "int64", 4)]}}
    assert internal["processID"] == server["processID"]
    assert server["tags"] == [
        tag("otel.scope.name", "string", "io.opentelemetry.spring"), tag("otel.scope.version", "string", "2.1.0"),
        tag("http.status_code", "int64", 503), tag("retry.ratio", "float64", 0.25), tag("cache.hit", "bool", False),
        tag("http.method", "string", "GET"),
        tag("payload.digest", "binary", base64.b64encode(b"\x00\xffdigest").decode()),
        tag("big.count", "int64", str(2**60)),  # beyond JavaScript's safe integers: a string, as Jaeger writes it
        tag("span.kind", "string", "server"), tag("error", "bool", True),
        tag("otel.status_description", "string", "upstream reset"),
        tag("w3c.tracestate", "string", "rojo=00f067aa0ba902b7")]
    assert server["references"] == [
        {"refType": "FOLLOWS_FROM", "traceID": TRACE_ID, "spanID": PARENT_ID},  # the parent link retyped it
        {"refType": "FOLLOWS_FROM", "traceID": LINKED_TRACE, "spanID": LINKED_SPAN}]
    assert server["logs"] == [{"timestamp": NOW_US + 700, "fields": [
        tag("event", "string", "exception"), tag("exception.type", "string", "IOError"), tag("attempt", "int64", 2)]}]
    assert (server["flags"], server["startTime"], server["duration"]) == (0x101, NOW_US, 1500)
    assert "flags" not in internal
    assert internal["tags"][2:] == [tag("span.kind", "string", "internal"), tag("otel.status_code", "string", "OK")]
    assert internal["references"] == [{"refType": "CHILD_OF", "traceID": TRACE_ID, "spanID": SPAN_ID}]


async def test_the_zipkin_api_still_sees_resource_attributes_as_tags(http: aiohttp.ClientSession,
                                                                     collector: RunningCollector) -> None:
    """Issue 7's Zipkin view (as the OpenTelemetry Collector's Zipkin exporter writes it) is unchanged."""
    await post_otlp(http, collector, rich_request().SerializeToString(), "application/x-protobuf")
    async with http.get(f"{collector.zipkin_url}/api/v2/trace/{TRACE_ID}") as response:
        server = next(span for span in await response.json() if span["id"] == SPAN_ID)
    assert server["localEndpoint"] == {"serviceName": "reviews"}
    assert server["tags"]["k8s.pod.name"] == "reviews-v2-abc"
    assert server["tags"]["host.cpu.count"] == "4"
    assert server["tags"]["http.status_code"] == "503"
    assert server["annotations"] == [{"timestamp": NOW_US + 700, "value": "exception"}]


async def test_operations_and_services_in_jaegers_shapes(http: aiohttp.ClientSession,
                                                         collector: RunningCollector) -> None:
    await post_otlp(http, collector, rich_request().SerializeToString(), "application/x-protobuf")
    answers = {}
    for path in ("/api/services", "/api/operations?service=reviews", "/api/operations?service=reviews&spanKind=server",
                 "/api/services/reviews/operations"):
        async with http.get(collector.query_url + path) as response:
            answers[path] = await response.json()
    assert answers["/api/services"] == {"data": ["reviews"], "total": 1, "limit": 0, "offset": 0, "errors": None}
    assert answers["/api/operations?service=reviews"]["data"] == [{"name": "GET /reviews/{id}", "spanKind": ""},
                                                                  {"name": "GET /reviews/{id}", "spanKind": "server"}]
    assert answers["/api/operations?service=reviews&spanKind=server"]["data"] == [
        {"name": "GET /reviews/{id}", "spanKind": "server"}]
    assert answers["/api/services/reviews/operations"]["data"] == ["GET /reviews/{id}"]


def test_a_server_span_sharing_a_client_id_gets_its_own_id() -> None:
    """spaniduniquifier_test.go TestSpanIDUniquifierTriggered / NotTriggered (jaegertracing/jaeger, Apache-2.0)."""
    def span(id: str, parent: str | None, kind: SpanKind | None) -> Span:
        return Span(trace_id="00000000000000020000000000000003", id=id, parent_id=parent, name="", kind=kind,
                    timestamp=0, duration=0, local_endpoint=Endpoint())
    client_id, another_id = "0000000000000001", "0100000000000000"
    client, server, another = span(client_id, None, "CLIENT"), span(client_id, None, "SERVER"), span(
        another_id, client_id, None)
    adjusted_client, adjusted_server, adjusted_another = deduplicate_client_server_span_ids([client, server, another])
    assert adjusted_client == client
    assert (adjusted_server.id, adjusted_server.parent_id) == ("0000000000000002", client_id)
    assert (adjusted_another.id, adjusted_another.parent_id) == (another_id, "0000000000000002")
    assert deduplicate_client_server_span_ids([server, another]) == [server, another]
