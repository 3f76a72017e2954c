"""OTLP trace requests (OTLP/HTTP bodies, OTLP/gRPC messages): built with, and read from, the official
opentelemetry-proto classes."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from proxy_span_samples import make_client_span

from tracemesh_sidecar.spans import otlp, otlp_writer
from tracemesh_sidecar.spans.errors import SpanDecodeError
from tracemesh_sidecar.spans.model import Annotation, Endpoint, Span


def attributes(message: Any) -> dict[str, Any]:
    return {item.key: getattr(item.value, item.value.WhichOneof("value")) for item in message.attributes}


def test_encoding_read_with_the_official_classes(proxy_spans: list[Span]) -> None:
    client, server = proxy_spans
    request = ExportTraceServiceRequest.FromString(otlp_writer.encode_request([client, server, client]))
    assert [attributes(rs.resource) for rs in request.resource_spans] == [
        {"service.name": "productpage.default"}, {"service.name": "reviews.default"}]
    productpage, reviews = request.resource_spans
    assert [len(rs.scope_spans[0].spans) for rs in request.resource_spans] == [2, 1]
    sent_client, sent_server = productpage.scope_spans[0].spans[0], reviews.scope_spans[0].spans[0]
    assert sent_client.trace_id == bytes.fromhex(client.trace_id)
    assert sent_client.span_id == bytes.fromhex(client.id)
    assert sent_server.parent_span_id == bytes.fromhex(client.id)
    assert sent_client.kind == OtlpSpan.SPAN_KIND_CLIENT and sent_server.kind == OtlpSpan.SPAN_KIND_SERVER
    assert sent_client.name == "reviews.default.svc.cluster.local:9080/*"
    assert sent_client.start_time_unix_nano == client.timestamp * 1000
    assert sent_client.end_time_unix_nano == (client.timestamp + client.duration) * 1000
    client_attributes = attributes(sent_client)
    assert client_attributes == client.tags | {"net.host.ip": "10.244.0.5", "net.peer.ip": "10.244.0.7",
                                               "net.peer.port": 9080}
    assert all(isinstance(value, str) for key, value in client_attributes.items() if key in client.tags)
    assert sent_client.status.code == Status.STATUS_CODE_UNSET
    assert sent_server.status.code == Status.STATUS_CODE_ERROR  # tag error=true
    assert attributes(sent_server)["net.peer.ip"] == "2001:db8::c001"
    assert [(event.time_unix_nano, event.name) for event in sent_server.events] == [
        (1_763_700_000_001_000_000, "ws")]


def test_round_trip(proxy_spans: list[Span]) -> None:
    assert otlp.decode_request_proto(otlp_writer.encode_request(proxy_spans)) == proxy_spans


def test_64bit_trace_id_is_padded_and_read_back_as_64bit() -> None:
    span = make_client_span()
    span.trace_id = "5af7183fb1d4cf5f"
    request = ExportTraceServiceRequest.FromString(otlp_writer.encode_request([span]))
    assert request.resource_spans[0].scope_spans[0].spans[0].trace_id == bytes(8) + bytes.fromhex(span.trace_id)
    assert otlp.decode_request_proto(request.SerializeToString()) == [span]


def official_request() -> ExportTraceServiceRequest:
    """What an OpenTelemetry SDK would send: typed attributes, status with a message, an unnamed service."""
    request = ExportTraceServiceRequest()
    named = request.resource_spans.add()
    named.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="ratings.default")))
    named.resource.attributes.append(KeyValue(key="host.name", value=AnyValue(string_value="node-1")))
    span = named.scope_spans.add().spans.add()
    span.trace_id = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    span.span_id = bytes.fromhex("eee19b7ec3c1b174")
    span.parent_span_id = bytes.fromhex("eee19b7ec3c1b173")
    span.name = "GET /ratings/{id}"
    span.kind = OtlpSpan.SPAN_KIND_SERVER
    span.start_time_unix_nano = 1_544_712_660_000_000_000
    span.end_time_unix_nano = 1_544_712_661_000_000_999
    span.attributes.extend([
        KeyValue(key="http.status_code", value=AnyValue(int_value=500)),
        KeyValue(key="retry", value=AnyValue(bool_value=True)),
        KeyValue(key="ratio", value=AnyValue(double_value=0.25)),
        KeyValue(key="list", value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1),
                                                                         AnyValue(string_value="a")]))),
        KeyValue(key="net.peer.ip", value=AnyValue(string_value="not an address")),
        KeyValue(key="net.peer.port", value=AnyValue(int_value=8080)),
    ])
    span.status.code = Status.STATUS_CODE_ERROR
    span.status.message = "upstream failed"
    event = span.events.add()
    event.time_unix_nano = 1_544_712_660_500_000_000
    event.name = "retrying"
    unnamed = request.resource_spans.add().scope_spans.add().spans.add()
    unnamed.trace_id = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    unnamed.span_id = bytes.fromhex("eee19b7ec3c1b175")
    unnamed.name = "work"
    return request


EXPECTED_OFFICIAL = [
    Span(trace_id="5b8efff798038103d269b633813fc60c", id="eee19b7ec3c1b174", parent_id="eee19b7ec3c1b173",
         name="GET /ratings/{id}", kind="SERVER", timestamp=1_544_712_660_000_000, duration=1_000_000,
         local_endpoint=Endpoint(service_name="ratings.default"),
         remote_endpoint=Endpoint(port=8080),
         # the resource's attributes other than service.name become tags, as the OTel Collector's Zipkin translator
         tags={"host.name": "node-1", "http.status_code": "500", "retry": "true", "ratio": "0.25", "list": '[1,"a"]',
               "net.peer.ip": "not an address", "error": "upstream failed"},
         annotations=[Annotation(timestamp=1_544_712_660_500_000, value="retrying")]),
    Span(trace_id="5b8efff798038103d269b633813fc60c", id="eee19b7ec3c1b175", name="work", kind=None,
         timestamp=0, duration=0, local_endpoint=Endpoint()),
]


def test_detected_resource_attributes_join_every_resource_and_override_as_envoy_merges(
        proxy_spans: list[Span]) -> None:
    """resource_provider.cc mergeResource: detected attributes insert_or_assign, service.name included."""
    client, server = proxy_spans
    resource = (("k8s.cluster.name", "prod"), ("deployment.environment", "staging"))
    request = ExportTraceServiceRequest.FromString(otlp_writer.encode_request([client, server], resource))
    assert [attributes(rs.resource) for rs in request.resource_spans] == [
        {"service.name": "productpage.default", "k8s.cluster.name": "prod", "deployment.environment": "staging"},
        {"service.name": "reviews.default", "k8s.cluster.name": "prod", "deployment.environment": "staging"}]
    renamed = ExportTraceServiceRequest.FromString(otlp_writer.encode_request([client], (("service.name", "pp"),)))
    assert attributes(renamed.resource_spans[0].resource) == {"service.name": "pp"}


def test_resource_attributes_read_back_as_tags_that_span_attributes_override(proxy_spans: list[Span]) -> None:
    client, _ = proxy_spans
    resource = (("k8s.cluster.name", "prod"), ("upstream_cluster", "from the resource"))
    decoded, = otlp.decode_request_proto(otlp_writer.encode_request([client], resource))
    assert decoded.tags["k8s.cluster.name"] == "prod"
    assert decoded.tags["upstream_cluster"] == client.tags["upstream_cluster"]
    assert decoded.local_endpoint.service_name == "productpage.default"


def test_partial_success_is_read_from_an_export_response() -> None:
    response = ExportTraceServiceResponse()
    assert otlp.decode_partial_success(response.SerializeToString()) == otlp.ACCEPTED_WHOLE
    response.partial_success.rejected_spans = 4
    response.partial_success.error_message = "too old"
    assert otlp.decode_partial_success(response.SerializeToString()) == otlp.PartialSuccess(4, "too old")
    assert otlp.decode_partial_success(b"\xff\xff") == otlp.ACCEPTED_WHOLE  # unreadable: the 2xx/OK stands


def test_decodes_what_the_official_classes_produce() -> None:
    assert otlp.decode_request_proto(official_request().SerializeToString()) == EXPECTED_OFFICIAL


def otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP JSON as the spec writes it: json_format's mapping, but ids in hex rather than base64."""
    document = json_format.MessageToDict(request)
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return document


def test_json_with_hex_ids_decodes_like_the_protobuf() -> None:
    document = otlp_json(official_request())
    assert document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["startTimeUnixNano"] == "1544712660000000000"
    assert otlp.decode_request_json(json.dumps(document).encode()) == EXPECTED_OFFICIAL


def test_json_as_the_otlp_spec_example_writes_it() -> None:
    body = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "details.default"}}]},
        "scopeSpans": [{"scope": {"name": "my.library"}, "spans": [{
            "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
            "parentSpanId": "", "name": "I'm a server span",
            "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": 1544712661000000000,
            "kind": 2, "attributes": [{"key": "my.span.attr", "value": {"intValue": "42"}}],
            "links": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b173"}],
            "status": {"code": "STATUS_CODE_OK"},
        }, {
            "trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b175",
            "name": "client", "kind": "SPAN_KIND_CLIENT", "start_time_unix_nano": "1544712660000000000",
            "end_time_unix_nano": "1544712660000001000",
        }]}],
    }]}
    server, client = otlp.decode_request_json(json.dumps(body).encode())
    assert (server.trace_id, server.id, server.parent_id) == (
        "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", None)
    assert (server.kind, server.duration, server.tags) == ("SERVER", 1_000_000, {"my.span.attr": "42"})
    assert server.local_endpoint.service_name == "details.default"
    assert (client.kind, client.duration, client.id) == ("CLIENT", 1, "eee19b7ec3c1b175")


def span_json(**changes: Any) -> bytes:
    span = {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "x",
            "startTimeUnixNano": "1000", "endTimeUnixNano": "2000"} | changes
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


SPAN_PATH = "resourceSpans[0].scopeSpans[0].spans[0]"


@pytest.mark.parametrize(("body", "field", "problem"), [
    (b"{", "body", "is not valid JSON"),
    (b"[]", "body", "must be a JSON object"),
    (b'{"resourceSpans": {}}', "resourceSpans", "must be an array"),
    (span_json(traceId="W47/95gDgQPSabYzgT/GDA=="), f"{SPAN_PATH}.traceId", "32 hex characters"),
    (span_json(spanId="eee19b7e"), f"{SPAN_PATH}.spanId", "16 hex characters"),
    (span_json(parentSpanId="zz" * 8), f"{SPAN_PATH}.parentSpanId", "16 hex characters"),
    (span_json(traceId="0" * 32), f"{SPAN_PATH}.traceId", "all zeros"),
    (span_json(startTimeUnixNano="soon"), "body", "startTimeUnixNano"),
    (span_json(name=["x"]), "body", "name"),
    (span_json(kind=9), f"{SPAN_PATH}.kind", "not a known SpanKind"),
    (span_json(endTimeUnixNano="999"), f"{SPAN_PATH}.endTimeUnixNano", "is before startTimeUnixNano"),
    (span_json(spanId=None), f"{SPAN_PATH}.spanId", "must be 8 bytes, got 0"),
])
def test_bad_json_is_refused_naming_the_field(body: bytes, field: str, problem: str) -> None:
    with pytest.raises(SpanDecodeError) as caught:
        otlp.decode_request_json(body)
    assert caught.value.field == field
    assert problem in caught.value.problem


def test_bad_protobuf_is_refused() -> None:
    with pytest.raises(SpanDecodeError, match=r"^body: is not an OTLP ExportTraceServiceRequest in protobuf"):
        otlp.decode_request_proto(b"\xff\xff\xff\xff")
    request = official_request()
    request.resource_spans[1].scope_spans[0].spans[0].trace_id = bytes(range(1, 9))
    with pytest.raises(SpanDecodeError) as caught:
        otlp.decode_request_proto(request.SerializeToString())
    assert str(caught.value) == "resourceSpans[1].scopeSpans[0].spans[0].traceId: must be 16 bytes, got 8"
