"""The OTLP/gRPC exporter (h2) against a real grpcio server: what arrives, how, and which answers are retried."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
from collector_double import Transport, make_span, running_collector, test_provider, wait_until
from grpc import aio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracemesh_sidecar.export import ProviderExporter
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.stats import Stats


async def test_spans_arrive_as_unary_export_calls_with_metadata_and_deadline() -> None:
    stats = Stats()
    async with running_collector(transport="grpc") as collector:
        provider = collector.provider(name="otel", max_spans=10)
        exporter = ProviderExporter(provider, stats)
        spans = [make_span(number) for number in range(25)]
        for span in spans:
            exporter.submit(span)
        await wait_until(lambda: len(collector.spans()) == 25)
        await exporter.close()
    assert sorted(collector.spans(), key=lambda span: span.timestamp) == spans
    assert len(collector.received) == 3
    for request in collector.received:
        assert request.path == "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        assert request.headers["x-tenant"] == "team-a"  # initialMetadata
        assert request.headers["user-agent"].startswith("tracemesh-sidecar")
    # grpc-timeout carries the provider's timeout (0.5 s) as the call's deadline
    assert all(remaining is not None and 0 < remaining <= provider.timeout_s
               for remaining in collector.time_remaining)  # type: ignore[attr-defined]
    assert (stats.get("tracing.otel.spans_sent"), stats.get("tracing.otel.batches_sent")) == (25, 3)


def big_span(number: int) -> Span:
    span = make_span(number)
    span.tags["http.url"] = "http://reviews.default.svc.cluster.local:9080/reviews/" + "x" * 600
    return span


async def test_a_batch_larger_than_the_http2_window_goes_through_flow_control() -> None:
    async with running_collector(transport="grpc") as collector:
        exporter = ProviderExporter(replace(collector.provider(name="otel", max_spans=512, queue_size=1024),
                                            timeout_s=5.0), Stats())
        for number in range(512):
            exporter.submit(big_span(number))
        await wait_until(lambda: len(collector.spans()) == 512, timeout_s=10)
        await exporter.close()
    assert len(collector.received) == 1
    assert len(collector.received[0].body) > 4 * 65_535  # several times HTTP/2's initial window


async def submit_and_settle(exporter: ProviderExporter, count: int, settled: Callable[[], bool]) -> None:
    """Submits `count` spans, waits until `settled()`, then a little longer (for a retry that must not come)."""
    for number in range(count):
        exporter.submit(make_span(number))
    await wait_until(settled)
    await asyncio.sleep(0.3)
    await exporter.close()


async def test_partial_success_counts_the_rejected_spans_and_does_not_retry(
        transport: Transport, caplog: pytest.LogCaptureFixture) -> None:
    stats = Stats()
    caplog.set_level(logging.WARNING, logger="tracemesh_sidecar.export")
    async with running_collector(transport=transport) as collector:
        collector.rejected = 3
        exporter = ProviderExporter(collector.provider("opentelemetry", name="otel", max_spans=10), stats)
        await submit_and_settle(exporter, 10, lambda: stats.get("tracing.otel.batches_sent") == 1)
    assert len(collector.received) == 1
    assert stats.get("tracing.otel.spans_sent") == 7
    assert stats.get("tracing.otel.spans_dropped_rejected") == 3
    assert stats.get("tracing.otel.spans_dropped") == 3
    assert any("rejected 3 of 10 spans" in record.getMessage() and "spans too old" in record.getMessage()
               for record in caplog.records)


async def test_resource_exhausted_without_retry_info_is_not_retried(transport: Transport) -> None:
    """HTTP 413; gRPC RESOURCE_EXHAUSTED with no RetryInfo (the OTLP specification: not retryable)."""
    stats = Stats()
    async with running_collector(status=413, transport=transport) as collector:
        exporter = ProviderExporter(collector.provider("opentelemetry", name="otel", max_retries=3), stats)
        await submit_and_settle(exporter, 5, lambda: stats.get("tracing.otel.spans_dropped_export_failed") == 5)
    assert len(collector.received) == 1


@pytest.fixture
async def server_without_the_service() -> AsyncIterator[int]:
    server = aio.server(options=[("grpc.so_reuseport", 0)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port
    await server.stop(grace=None)


async def test_a_grpc_server_without_trace_service_is_unimplemented_and_not_retried(
        server_without_the_service: int, caplog: pytest.LogCaptureFixture) -> None:
    stats = Stats()
    caplog.set_level(logging.WARNING, logger="tracemesh_sidecar.export")
    exporter = ProviderExporter(test_provider(server_without_the_service, "opentelemetry", "otel", "grpc",
                                              max_retries=3), stats)
    exporter.submit(make_span(1))
    await wait_until(lambda: stats.get("tracing.otel.spans_dropped_export_failed") == 1)
    await exporter.close()
    assert stats.get("tracing.otel.export_errors") == 1
    assert any("gRPC UNIMPLEMENTED" in record.getMessage() for record in caplog.records)


async def test_an_http1_server_on_the_grpc_port_fails_the_export_without_hanging() -> None:
    stats = Stats()
    async with running_collector(transport="http") as http_only:
        exporter = ProviderExporter(test_provider(http_only.port, "opentelemetry", "otel", "grpc", max_retries=1),
                                    stats)
        exporter.submit(make_span(1))
        await wait_until(lambda: stats.get("tracing.otel.spans_dropped_export_failed") == 1, timeout_s=5)
        await exporter.close()
    assert stats.get("tracing.otel.export_errors") == 2  # retried once: a broken connection may heal


async def test_environment_resource_detector_sends_otel_resource_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.cluster.name=prod%2Deu,deployment.environment=staging,bad")
    async with running_collector(transport="grpc") as collector:
        provider = replace(collector.provider(name="otel"), resource_detectors=("environment",))
        exporter = ProviderExporter(provider, Stats())
        exporter.submit(make_span(1))
        await wait_until(lambda: bool(collector.received))
        await exporter.close()
    request = ExportTraceServiceRequest.FromString(collector.received[0].body)
    attributes = {item.key: item.value.string_value for item in request.resource_spans[0].resource.attributes}
    assert attributes == {"service.name": "productpage.default", "k8s.cluster.name": "prod-eu",
                          "deployment.environment": "staging"}



async def test_a_call_that_times_out_gives_up_its_connection() -> None:
    """A black-holed connection (a collector pod gone without a reset) must not swallow every later call."""
    connections: list[asyncio.StreamWriter] = []

    async def black_hole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)  # accepted, never answered

    server = await asyncio.start_server(black_hole, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stats = Stats()
    exporter = ProviderExporter(test_provider(port, "opentelemetry", "otel", "grpc", max_retries=2), stats)
    exporter.submit(make_span(1))
    await wait_until(lambda: stats.get("tracing.otel.spans_dropped_export_failed") == 1, timeout_s=10)
    await exporter.close()
    server.close()
    for writer in connections:
        writer.close()
    assert stats.get("tracing.otel.export_errors") == 3
    assert len(connections) == 3  # each attempt on a fresh connection
