"""OTLP/HTTP ingest on its own port: protobuf and JSON, answered as the OTLP specification says."""

from __future__ import annotations

import base64
import gzip
import json

import aiohttp
import pytest
from collector_samples import NOW_US, bookinfo_trace, trace_id
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tracemesh_collector import RunningCollector
from tracemesh_collector.otlp_api import encode_rpc_status
from tracemesh_sidecar.spans import otlp_writer, zipkin_json

PROTOBUF, JSON = "application/x-protobuf", "application/json"


def rpc_status_class() -> type[Message]:
    """google.rpc.Status built from its definition (code = 1, message = 2), independent of the collector's encoder."""
    file = descriptor_pb2.FileDescriptorProto(name="test_google_rpc_status.proto", package="test.google.rpc",
                                              syntax="proto3")
    status = file.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
                     label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    status.field.add(name="message", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                     label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("test.google.rpc.Status"))


async def post(http: aiohttp.ClientSession, collector: RunningCollector, body: bytes, content_type: str,
               **headers: str) -> tuple[int, str, bytes]:
    async with http.post(f"{collector.otlp_url}/v1/traces", data=body,
                         headers={"Content-Type": content_type, **headers}) as response:
        return response.status, response.content_type, await response.read()


async def test_protobuf_export_is_stored_and_answered_with_an_export_response(
        http: aiohttp.ClientSession, collector: RunningCollector) -> None:
    trace = bookinfo_trace(trace_id(1), NOW_US)
    status, content_type, body = await post(http, collector, otlp_writer.encode_request(trace), PROTOBUF)
    assert (status, content_type) == (200, PROTOBUF)
    response = ExportTraceServiceResponse.FromString(body)
    assert not response.HasField("partial_success")
    stored = collector.store.get_trace(trace_id(1))
    assert sorted(span.id for span in stored) == sorted(span.id for span in trace)
    assert {span.local_endpoint.service_name for span in stored} == {
        "productpage.default", "details.default", "reviews.default", "ratings.default"}


async def test_json_export_is_stored(http: aiohttp.ClientSession, collector: RunningCollector) -> None:
    request = ExportTraceServiceRequest.FromString(otlp_writer.encode_request(bookinfo_trace(trace_id(1), NOW_US)))
    body = otlp_json_with_hex_ids(json_format.MessageToJson(request).encode())
    status, content_type, answer = await post(http, collector, body, JSON)
    assert (status, content_type, json.loads(answer)) == (200, JSON, {})
    assert len(collector.store.get_trace(trace_id(1))) == 7


def otlp_json_with_hex_ids(body: bytes) -> bytes:
    """protobuf's JSON mapping writes bytes as base64; OTLP/JSON writes trace and span ids as hex."""
    document = json.loads(body)
    for resource in document["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(document).encode()


async def test_gzipped_export_is_accepted(http: aiohttp.ClientSession, collector: RunningCollector) -> None:
    body = gzip.compress(otlp_writer.encode_request(bookinfo_trace(trace_id(1), NOW_US)))
    status, _, _ = await post(http, collector, body, PROTOBUF, **{"Content-Encoding": "gzip"})
    assert status == 200
    assert collector.store.span_count == 7


@pytest.mark.parametrize(("body", "content_type", "named"), [
    (b"\x0a\xff\xff\xff", PROTOBUF, "body: is not an OTLP ExportTraceServiceRequest"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "00f067aa0ba902b7"}]}]}]}', JSON,
     "traceId"),
    (b"{not json", JSON, "body"),
])
async def test_a_malformed_export_gets_400_with_a_status_and_stores_nothing(
        http: aiohttp.ClientSession, collector: RunningCollector, body: bytes, content_type: str, named: str) -> None:
    collector.store.add(bookinfo_trace(trace_id(1), NOW_US))
    status, answer_type, answer = await post(http, collector, body, content_type)
    assert (status, answer_type) == (400, content_type)
    if content_type == PROTOBUF:
        rpc_status = rpc_status_class().FromString(answer)
        code, message = rpc_status.code, rpc_status.message
    else:
        document = json.loads(answer)
        code, message = document["code"], document["message"]
    assert code == 3  # INVALID_ARGUMENT
    assert message.startswith("malformed ExportTraceServiceRequest, no span stored: ")
    assert named in message
    assert collector.store.span_count == 7


async def test_other_media_types_get_415(http: aiohttp.ClientSession, collector: RunningCollector) -> None:
    status, _, answer = await post(http, collector, b"[]", "text/plain")
    assert status == 415
    assert PROTOBUF in json.loads(answer)["message"]


async def test_the_otlp_port_serves_only_otlp(http: aiohttp.ClientSession, collector: RunningCollector) -> None:
    body = zipkin_json.encode_spans(bookinfo_trace(trace_id(1), NOW_US))
    async with http.post(f"{collector.otlp_url}/api/v2/spans", data=body,
                         headers={"Content-Type": JSON}) as response:
        assert response.status == 404


@pytest.mark.parametrize("message", ["", "x", "trace: é" * 40])
def test_rpc_status_encoding_reads_back_with_the_message_definition(message: str) -> None:
    decoded = rpc_status_class().FromString(encode_rpc_status(3, message))
    assert (decoded.code, decoded.message) == (3, message)
