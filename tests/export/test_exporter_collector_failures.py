"""A collector that is down, slow, failing or refusing: the request path never notices, memory stays bounded.

Each test runs against an HTTP collector and an OTLP/gRPC one (a real grpcio server); the exporter's
queueing, retrying and dropping is the same code for both, the status it retries on is each protocol's.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from collector_double import DOUBLES, SLOW, Transport, make_span, running_collector, wait_until
from io_watch import IO_WATCH

from tracemesh_sidecar.export import ProviderExporter
from tracemesh_sidecar.stats import Stats

SUBMITS = 20_000
QUEUE_SIZE = 100
PROVIDER = "backend"


def stat(stats: Stats, name: str) -> int:
    return stats.get(f"tracing.{PROVIDER}.{name}")


async def submit_while_exporting(exporter: ProviderExporter, count: int = SUBMITS) -> tuple[list[str], int]:
    """Submits `count` spans in chunks, letting the exporter's task run between chunks.

    Returns the I/O the submits themselves did (audit event names: a submit that sent, connected, opened
    or slept shows here, where a time bound could not tell it from a descheduled process) and the deepest
    queue seen.
    """
    span = make_span(1)
    io: list[str] = []
    deepest = 0
    for _ in range(count // 500):
        IO_WATCH.events.clear()
        with IO_WATCH.watching():
            for _ in range(500):
                exporter.submit(span)
        io.extend(IO_WATCH.events)
        deepest = max(deepest, exporter.queue_depth)
        await asyncio.sleep(0.002)
    return io, deepest


async def test_the_io_watch_catches_a_connection_to_the_collector(transport: Transport) -> None:
    """The check the tests below rely on can fail: a submit that connected to the collector would show."""
    async with running_collector(transport=transport) as collector:
        IO_WATCH.events.clear()
        with IO_WATCH.watching():
            socket.create_connection(("127.0.0.1", collector.port)).close()
    assert "socket.connect" in IO_WATCH.events


def accounted(stats: Stats) -> bool:
    """Every submitted span is sent or dropped, once the exporter is closed."""
    return stat(stats, "spans_submitted") == stat(stats, "spans_sent") + sum(
        stat(stats, f"spans_dropped_{reason}") for reason in ("queue_full", "export_failed", "closed", "rejected"))


async def test_collector_down_then_back(transport: Transport) -> None:
    collector = DOUBLES[transport]()
    await collector.start()
    await collector.stop()  # nothing listens on collector.port now
    stats = Stats()
    exporter = ProviderExporter(collector.provider(name=PROVIDER, queue_size=QUEUE_SIZE, max_retries=2), stats)

    io, deepest = await submit_while_exporting(exporter)

    assert io == []
    assert deepest <= QUEUE_SIZE and exporter.queue_depth <= QUEUE_SIZE
    assert stat(stats, "spans_submitted") == SUBMITS
    assert stat(stats, "spans_dropped_queue_full") >= SUBMITS - QUEUE_SIZE - 10 * 50
    assert stat(stats, "export_errors") >= 1
    assert stat(stats, "spans_sent") == 0

    await collector.start()  # the collector comes back on the same port
    await wait_until(lambda: stat(stats, "spans_sent") > 0, timeout_s=10)
    await exporter.close()
    assert accounted(stats)
    assert stat(stats, "spans_dropped") == SUBMITS - stat(stats, "spans_sent")
    await collector.stop()


async def test_collector_slow(transport: Transport) -> None:
    stats = Stats()
    async with running_collector(status=SLOW, transport=transport) as collector:
        provider = collector.provider(name=PROVIDER, queue_size=QUEUE_SIZE, max_retries=1)
        assert provider.timeout_s == 0.5
        exporter = ProviderExporter(provider, stats)
        io, deepest = await submit_while_exporting(exporter)
        await wait_until(lambda: stat(stats, "spans_dropped_export_failed") > 0, timeout_s=10)
        await exporter.close(timeout_s=0.1)
        attempts = len(collector.received)
    assert io == []
    assert deepest <= QUEUE_SIZE
    assert stat(stats, "spans_sent") == 0
    # Each attempt timed out after 0.5 s and each batch got exactly two (max_retries=1); one may be cut by close.
    assert stat(stats, "export_errors") in (attempts, attempts - 1)
    assert accounted(stats)


async def test_collector_answering_500_is_retried_a_bounded_number_of_times(transport: Transport) -> None:
    stats = Stats()
    async with running_collector(status=500, transport=transport) as collector:
        exporter = ProviderExporter(collector.provider(name=PROVIDER, max_spans=25, max_retries=2), stats)
        for number in range(25):
            exporter.submit(make_span(number))
        await wait_until(lambda: stat(stats, "spans_dropped_export_failed") == 25)
        await asyncio.sleep(0.3)  # no further attempt comes
        assert len(collector.received) == 3  # the first try and max_retries=2 retries
        assert [request.spans() for request in collector.received[1:]] == [collector.received[0].spans()] * 2
        assert stat(stats, "export_errors") == 3

        collector.status = 202  # recovered: new spans flow again
        exporter.submit(make_span(99))
        await wait_until(lambda: stat(stats, "spans_sent") == 1)
        await exporter.close()
    assert accounted(stats)


async def test_collector_answering_500_under_load_keeps_submit_fast_and_bounded(transport: Transport) -> None:
    stats = Stats()
    async with running_collector(status=500, transport=transport) as collector:
        exporter = ProviderExporter(collector.provider(name=PROVIDER, queue_size=QUEUE_SIZE, max_retries=1), stats)
        io, deepest = await submit_while_exporting(exporter)
        await exporter.close(timeout_s=0.1)
        attempts = len(collector.received)
    assert io == []
    assert deepest <= QUEUE_SIZE
    assert stat(stats, "spans_dropped_queue_full") > 0
    # Every answered attempt is an export error; close may cut the last one after the collector got it
    # and before its 500 came back (its spans are then counted dropped as closed, which `accounted` checks).
    assert stat(stats, "export_errors") in (attempts, attempts - 1)
    assert stat(stats, "export_errors") >= 1
    assert accounted(stats)


async def test_429_is_retried(transport: Transport) -> None:
    """gRPC: RESOURCE_EXHAUSTED carrying a RetryInfo, which the OTLP specification makes retryable."""
    stats = Stats()
    async with running_collector(script=[429, 429], transport=transport) as collector:
        exporter = ProviderExporter(collector.provider(name=PROVIDER, max_retries=3), stats)
        for number in range(5):
            exporter.submit(make_span(number))
        await wait_until(lambda: stat(stats, "spans_sent") == 5)
        await exporter.close()
    assert len(collector.received) == 3
    assert stat(stats, "export_errors") == 2
    assert stat(stats, "spans_dropped") == 0


async def test_400_is_not_retried_and_logged_once(caplog: pytest.LogCaptureFixture, transport: Transport) -> None:
    """gRPC: INVALID_ARGUMENT."""
    stats = Stats()
    caplog.set_level(logging.WARNING, logger="tracemesh_sidecar.export")
    async with running_collector(status=400, transport=transport) as collector:
        provider = collector.provider(name=PROVIDER, max_spans=5, max_retries=3)
        exporter = ProviderExporter(provider, stats)
        for number in range(10):
            exporter.submit(make_span(number))
        await wait_until(lambda: stat(stats, "spans_dropped_export_failed") == 10)
        await asyncio.sleep(0.3)
        await exporter.close()
    assert len(collector.received) == 2  # two batches, one attempt each
    assert stat(stats, "export_errors") == 2
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert collector.refusal in warnings[0] and "this collector says no" in warnings[0]
    assert provider.url in warnings[0]
