"""Healthy collectors: spans arrive batched, decodable, with the provider's headers, counted.

The batching tests run over HTTP and OTLP/gRPC (test_grpc_export.py has gRPC's own delivery test).
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from collector_double import CollectorDouble, Transport, make_span, running_collector, wait_until

from tracemesh_sidecar.config.model import ProviderKind
from tracemesh_sidecar.export import ProviderExporter
from tracemesh_sidecar.stats import Stats

CONTENT_TYPES = {"zipkin": "application/json", "jaeger": "application/x-protobuf",
                 "opentelemetry": "application/x-protobuf"}


@pytest.mark.parametrize("kind", ["zipkin", "jaeger", "opentelemetry"])
async def test_spans_arrive_in_batches_in_the_provider_format(kind: ProviderKind) -> None:
    stats = Stats()
    async with running_collector() as collector:
        exporter = ProviderExporter(collector.provider(kind, name="backend", max_spans=10), stats)
        spans = [make_span(number) for number in range(25)]
        for span in spans:
            exporter.submit(span)
        await wait_until(lambda: len(collector.spans()) == 25)
        await exporter.close()
    assert sorted(collector.spans(), key=lambda span: span.timestamp) == spans
    assert all(len(request.spans()) <= 10 for request in collector.received)
    assert len(collector.received) == 3
    for request in collector.received:
        assert request.path == ("/api/v2/spans" if kind == "zipkin" else "/v1/traces")
        assert request.headers["Content-Type"] == CONTENT_TYPES[kind]
        assert request.headers["x-tenant"] == "team-a"
    assert stats.get("tracing.backend.spans_submitted") == 25
    assert stats.get("tracing.backend.spans_sent") == 25
    assert stats.get("tracing.backend.batches_sent") == 3
    assert stats.get("tracing.backend.spans_dropped") == 0
    assert stats.get("tracing.backend.queue_depth") == 0


async def test_partial_batch_waits_for_the_flush_interval(transport: Transport) -> None:
    async with running_collector(transport=transport) as collector:
        exporter = ProviderExporter(collector.provider(max_spans=100, flush_interval_s=0.3), Stats())
        started = time.monotonic()
        for number in range(3):
            exporter.submit(make_span(number))
        await wait_until(lambda: bool(collector.received))
        waited = collector.received[0].at - started
        await exporter.close()
    assert 0.25 <= waited < 2.0
    assert len(collector.received) == 1 and len(collector.spans()) == 3


async def test_a_slow_collector_gets_one_partial_batch_per_flush_interval(transport: Transport) -> None:
    """Spans that arrive while a partial batch is out wait for the next interval, as in OpenTelemetry's batch
    processor (opentelemetry-python, opentelemetry-sdk/src/opentelemetry/sdk/_shared_internal/__init__.py:
    BatchProcessor._should_export_batch, EXPORT_AT_LEAST_ONE_BATCH after the schedule delay, then only while a
    full batch is queued), instead of following it out one round trip later."""
    async with running_collector(transport=transport) as collector:
        collector.answer_delay_s = 0.15
        exporter = ProviderExporter(collector.provider(max_spans=1000, flush_interval_s=0.3), Stats())
        for number in range(120):  # a steady 100 spans/s for 1.2 s
            exporter.submit(make_span(number))
            await asyncio.sleep(0.01)
        await wait_until(lambda: len(collector.spans()) == 120)
        await exporter.close()
    sent_at = [request.at for request in collector.received]
    gaps = [later - (earlier + 0.15) for earlier, later in itertools.pairwise(sent_at)]  # answer to next request
    assert len(sent_at) >= 3 and min(gaps) >= 0.25, gaps
    assert sorted(span.timestamp for span in collector.spans()) == [make_span(n).timestamp for n in range(120)]


async def test_full_batch_goes_without_waiting_for_the_interval(transport: Transport) -> None:
    async with running_collector(transport=transport) as collector:
        exporter = ProviderExporter(collector.provider(max_spans=5, flush_interval_s=30), Stats())
        exporter.submit(make_span(100))  # starts the exporter's task
        await wait_until(lambda: exporter.queue_depth == 1)
        started = time.monotonic()
        for number in range(4):
            exporter.submit(make_span(number))
        await wait_until(lambda: bool(collector.received), timeout_s=5)
        assert collector.received[0].at - started < 2.0
        await exporter.close()
    assert len(collector.spans()) == 5


async def test_close_flushes_what_is_queued(transport: Transport) -> None:
    async with running_collector(transport=transport) as collector:
        exporter = ProviderExporter(collector.provider(max_spans=100, flush_interval_s=30), Stats())
        for number in range(7):
            exporter.submit(make_span(number))
        await exporter.close(timeout_s=2.0)
        assert len(collector.spans()) == 7
    exporter.submit(make_span(8))  # after close: counted, not queued, no error
    assert exporter.queue_depth == 0


def test_submit_without_a_running_loop_queues_for_later() -> None:
    stats = Stats()
    exporter = ProviderExporter(CollectorDouble(port=9).provider(), stats)
    exporter.submit(make_span(1))
    assert exporter.queue_depth == 1
    assert stats.get("tracing.zipkin.spans_submitted") == 1
    exporter.discard()
    assert stats.get("tracing.zipkin.spans_dropped_closed") == 1
