"""OTLP/gRPC ingest on its own port, called by a real grpcio client (the opentelemetry-proto stub), and by the
sidecar's own h2 exporter: into the same store as every other ingest, readable through the Jaeger API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
from collector_samples import NOW_US, bookinfo_trace, trace_id
from grpc import aio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from tracemesh_collector import ListenError, RunningCollector, run_collector
from tracemesh_collector.jaeger_json import trace_from_jaeger
from tracemesh_sidecar.config.model import ProviderConfig
from tracemesh_sidecar.export import ExporterSet
from tracemesh_sidecar.spans import otlp_writer
from tracemesh_sidecar.stats import Stats


@pytest.fixture
async def channel(collector: RunningCollector) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(collector.otlp_grpc_target) as channel:
        yield channel


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip])
async def test_export_from_a_grpcio_client_is_stored_and_answered(
        channel: aio.Channel, collector: RunningCollector, http: aiohttp.ClientSession,
        compression: grpc.Compression) -> None:
    trace = bookinfo_trace(trace_id(1), NOW_US)
    request = ExportTraceServiceRequest.FromString(otlp_writer.encode_request(trace))
    response = await TraceServiceStub(channel).Export(request, timeout=5, compression=compression)
    assert response == ExportTraceServiceResponse()  # no partial_success: everything accepted
    async with http.get(f"{collector.query_url}/api/traces/{trace_id(1)}") as answer:
        [stored] = (await answer.json())["data"]
    assert sorted(span.id for span in trace_from_jaeger(stored)) == sorted(span.id for span in trace)


async def test_a_malformed_message_is_invalid_argument_naming_the_field(
        channel: aio.Channel, collector: RunningCollector) -> None:
    request = ExportTraceServiceRequest.FromString(otlp_writer.encode_request(bookinfo_trace(trace_id(1), NOW_US)))
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = b"\x01\x02\x03"
    with pytest.raises(aio.AioRpcError) as raised:
        await TraceServiceStub(channel).Export(request, timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no span stored" in str(raised.value.details())
    assert "resourceSpans[0].scopeSpans[0].spans[0].traceId" in str(raised.value.details())
    assert collector.store.span_count == 0


async def test_other_methods_are_unimplemented(channel: aio.Channel) -> None:
    call = channel.unary_unary("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export")
    with pytest.raises(aio.AioRpcError) as raised:
        await call(b"", timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_the_sidecar_grpc_exporter_delivers_to_the_collector(collector: RunningCollector) -> None:
    exporters = ExporterSet(Stats())
    exporters.apply([ProviderConfig(name="otel", kind="opentelemetry", service="127.0.0.1",
                                    port=collector.otlp_grpc_port, path="", transport="grpc")])
    trace = bookinfo_trace("4e441824ec2b6a44ffdc9bb9a6453df3", NOW_US)
    for span in trace:
        exporters.submit("otel", span)
    await exporters.close(timeout_s=5.0)
    received = collector.store.get_trace(trace[0].trace_id)
    assert sorted((s.id, s.parent_id, s.kind, s.local_endpoint.service_name) for s in received) == sorted(
        (s.id, s.parent_id, s.kind, s.local_endpoint.service_name) for s in trace)


async def test_a_second_collector_cannot_share_the_grpc_port(collector: RunningCollector) -> None:
    """grpcio would set SO_REUSEPORT and let two collectors split the exports between them silently."""
    with pytest.raises(ListenError) as raised:
        async with run_collector("127.0.0.1", 0, 0, 0, otlp_grpc_port=collector.otlp_grpc_port):
            pass
    assert f"127.0.0.1:{collector.otlp_grpc_port} for OTLP/gRPC" in str(raised.value)
    assert "--otlp-grpc-port" in str(raised.value)


@pytest.mark.parametrize(("metadata", "stored"), [
    ((("authorization", "Bearer somerandomtoken"),), True),
    ((("authorization", "Bearer wrong"),), False),
    ((), False),
], ids=["right token", "wrong token", "no token"])
async def test_the_bearer_token_receiver_takes_only_calls_with_the_token(
        metadata: tuple[tuple[str, str], ...], stored: bool) -> None:
    """As Istio's otelcollector test collector (samples/open-telemetry/otel.yaml: bearertokenauth on 5317)."""
    async with run_collector(zipkin_port=0, otlp_port=0, query_port=0, otlp_grpc_port=0,
                             otlp_grpc_auth=(0, "somerandomtoken")) as collector:
        assert collector.otlp_grpc_auth_target is not None
        trace = bookinfo_trace(trace_id(1), NOW_US)
        request = ExportTraceServiceRequest.FromString(otlp_writer.encode_request(trace))
        async with aio.insecure_channel(collector.otlp_grpc_auth_target) as channel:
            call = TraceServiceStub(channel).Export(request, timeout=5, metadata=metadata)
            if stored:
                await call
            else:
                with pytest.raises(aio.AioRpcError) as raised:
                    await call
                assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert collector.store.span_count == (len(trace) if stored else 0)
        # The plain receiver beside it still takes calls without a token.
        async with aio.insecure_channel(collector.otlp_grpc_target) as channel:
            await TraceServiceStub(channel).Export(request, timeout=5)
