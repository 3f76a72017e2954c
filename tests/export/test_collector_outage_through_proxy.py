"""End to end: a real sidecar pair (`tracemesh proxy --config`, two processes) forwarding requests while
its collector is healthy, down, answering 500 and slow. Every request must succeed with its latency
unchanged, drops must show on the admin /stats, memory must stay flat, and spans must flow again
once the collector is back. Run with a Zipkin provider (HTTP) and an `opentelemetry` provider without an
`http` block (OTLP/gRPC, to a grpcio server).
"""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from collector_double import DOUBLES, SLOW, CollectorDouble, Transport, wait_until

REQUESTS_PER_PHASE = 100  # over three times QUEUE_SIZE: a slow collector must overflow the queue
QUEUE_SIZE = 30
# Generous: the claim is "unchanged", the bound only has to catch requests waiting on the collector
# (its timeout is 5 s) while tolerating a machine shared with other test runs.
LATENCY_FACTOR = 3.0
LATENCY_SLACK_S = 0.02
RSS_GROWTH_LIMIT_KB = 25_000
SERVICE_URL = "http://reviews.default.svc.cluster.local:9080/reviews/0"
PROVIDER = "backend"


def provider_document(transport: Transport, collector_port: int) -> dict[str, Any]:
    """Default timeouts (connect 2 s, total 5 s) and retries: the behaviour users get."""
    settings = {"service": "127.0.0.1", "port": collector_port,
                "batch": {"maxSpans": 10, "flushInterval": "50ms", "queueSize": QUEUE_SIZE}}
    # Istio's opentelemetry provider without an `http` block exports OTLP over gRPC.
    return {"name": PROVIDER, "zipkin" if transport == "http" else "opentelemetry": settings}


def proxy_document(service: str, provider: dict[str, Any], admin_port: int, **data_path: Any) -> dict[str, Any]:
    return {
        "version": "1",
        "node": {"podName": f"{service}-v1-0", "namespace": "default", "podIP": "127.0.0.1",
                 "canonicalService": service, "canonicalRevision": "v1"},
        "listeners": {"outbound": "off", "inbound": "off", "admin": f"127.0.0.1:{admin_port}",
                      "health": "off", "prometheus": "off"} | data_path.pop("listeners", {}),
        "tracing": {"client": {"provider": PROVIDER, "samplingPercentage": 100},
                    "server": {"provider": PROVIDER, "samplingPercentage": 100}},
        "providers": [provider],
    } | data_path


class Sidecar:
    def __init__(self, process: asyncio.subprocess.Process, admin_port: int) -> None:
        self.process = process
        self.admin_port = admin_port

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, float]:
        async with session.get(f"http://127.0.0.1:{self.admin_port}/stats") as response:
            text = await response.text()
        return {name: float(value) for name, _, value in
                (line.partition(": ") for line in text.splitlines() if ": " in line)}

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


async def start_sidecar(tmp_path: Path, name: str, document: dict[str, Any], admin_port: int) -> Sidecar:
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps(document))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracemesh_cli.main", "proxy", "--config", str(config), "--drain-timeout", "1",
        "--log-level", "warning", stdout=asyncio.subprocess.DEVNULL, stderr=(tmp_path / f"{name}.log").open("w"))
    return Sidecar(process, admin_port)


async def stop_sidecar(sidecar: Sidecar) -> None:
    if sidecar.process.returncode is None:
        sidecar.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(sidecar.process.wait(), 10)
        except TimeoutError:
            sidecar.process.kill()
            await sidecar.process.wait()


async def app_handler(request: web.Request) -> web.Response:
    return web.json_response({"id": 0, "reviews": ["An extremely entertaining play by Shakespeare."]})


async def started_app() -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", app_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]


@pytest.fixture
async def mesh(tmp_path: Path, unused_tcp_port_factory: Callable[[], int], transport: Transport
               ) -> AsyncIterator[tuple[CollectorDouble, Sidecar, Sidecar, int]]:
    """productpage's sidecar (outbound, explicit proxy) -> reviews' sidecar (inbound) -> reviews app.

    The proxies are separate processes, so their ports are picked up front.
    """
    free_port = unused_tcp_port_factory
    collector = DOUBLES[transport]()
    await collector.start()
    provider = provider_document(transport, collector.port)
    app_runner, app_port = await started_app()
    inbound_port, outbound_port = free_port(), free_port()
    server_admin, client_admin = free_port(), free_port()
    server = await start_sidecar(tmp_path, "reviews", proxy_document(
        "reviews", provider, server_admin,
        inbound={"ports": [{"port": 9080, "appPort": app_port, "listen": f"127.0.0.1:{inbound_port}"}]},
    ), server_admin)
    client = await start_sidecar(tmp_path, "productpage", proxy_document(
        "productpage", provider, client_admin,
        listeners={"outbound": f"127.0.0.1:{outbound_port}"},
        outbound={"services": [{"host": "reviews.default.svc.cluster.local", "port": 9080,
                                "endpoints": [f"127.0.0.1:{inbound_port}"]}]},
    ), client_admin)
    try:
        yield collector, client, server, outbound_port
    finally:
        await stop_sidecar(client)
        await stop_sidecar(server)
        await app_runner.cleanup()
        await collector.stop()


async def timed_requests(session: aiohttp.ClientSession, proxy: str) -> tuple[list[int], float]:
    """Sends REQUESTS_PER_PHASE requests one after another; their statuses and median latency (s)."""
    statuses, latencies = [], []
    for _ in range(REQUESTS_PER_PHASE):
        started = time.perf_counter()
        async with session.get(SERVICE_URL, proxy=proxy) as response:
            await response.read()
            statuses.append(response.status)
        latencies.append(time.perf_counter() - started)
    return statuses, statistics.median(latencies)


async def test_collector_outage_does_not_touch_requests(
        mesh: tuple[CollectorDouble, Sidecar, Sidecar, int]) -> None:
    collector, client, server, outbound_port = mesh
    proxy = f"http://127.0.0.1:{outbound_port}"
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session, aiohttp.ClientSession(timeout=timeout) as admin:
        for sidecar in (client, server):
            await _wait_for_admin(admin, sidecar)
        async with session.get(SERVICE_URL, proxy=proxy) as response:  # warm-up: connections, imports
            assert response.status == 200

        statuses, healthy_median = await timed_requests(session, proxy)
        assert statuses == [200] * REQUESTS_PER_PHASE
        await wait_until(lambda: len(collector.spans()) >= 2 * REQUESTS_PER_PHASE, timeout_s=10)
        rss_before = {sidecar: sidecar.rss_kb() for sidecar in (client, server)}

        medians: dict[str, float] = {}
        depths: list[float] = []
        # Each outage must show in the sidecars' own counters: a batch given up after bounded retries
        # (down, 500), spans dropped from a full queue while the exporter waits on a slow collector.
        for phase, counter in (("down", "spans_dropped_export_failed"),
                               ("answering 500", "spans_dropped_export_failed"),
                               ("slow", "spans_dropped_queue_full")):
            if phase == "down":
                await collector.stop()
            else:
                collector.status = 500 if phase == "answering 500" else SLOW
                if phase == "answering 500":
                    await collector.start()  # back on the same port, but failing
            before = [await _stat(admin, sidecar, counter) for sidecar in (client, server)]
            statuses, medians[phase] = await timed_requests(session, proxy)
            assert statuses == [200] * REQUESTS_PER_PHASE, phase
            for sidecar, value in zip((client, server), before, strict=True):
                depths.append(await _stat(admin, sidecar, "queue_depth"))
                await _wait_for_stat_above(admin, sidecar, counter, value)

        for phase, median in medians.items():
            assert median <= healthy_median * LATENCY_FACTOR + LATENCY_SLACK_S, (phase, median, healthy_median)
        assert max(depths) <= QUEUE_SIZE
        for sidecar in (client, server):
            stats = await sidecar.stats(admin)
            assert stats[f"tracing.{PROVIDER}.export_errors"] > 0
            assert stats[f"tracing.{PROVIDER}.spans_dropped"] >= (
                stats[f"tracing.{PROVIDER}.spans_dropped_queue_full"]
                + stats[f"tracing.{PROVIDER}.spans_dropped_export_failed"])
            assert sidecar.rss_kb() - rss_before[sidecar] < RSS_GROWTH_LIMIT_KB

        collector.recover()  # spans flow again
        received_before = len(collector.received)
        statuses, _ = await timed_requests(session, proxy)
        assert statuses == [200] * REQUESTS_PER_PHASE
        await wait_until(lambda: {span.local_endpoint.service_name for request in
                                  collector.received[received_before:] for span in request.spans()}
                         == {"productpage.default", "reviews.default"}, timeout_s=20)


async def _stat(session: aiohttp.ClientSession, sidecar: Sidecar, name: str) -> float:
    return (await sidecar.stats(session)).get(f"tracing.{PROVIDER}.{name}", 0.0)


async def _wait_for_stat_above(session: aiohttp.ClientSession, sidecar: Sidecar, name: str, value: float) -> None:
    deadline = time.monotonic() + 15
    while await _stat(session, sidecar, name) <= value:
        assert time.monotonic() < deadline, f"tracing.{PROVIDER}.{name} stayed at {value}"
        await asyncio.sleep(0.05)


async def _wait_for_admin(session: aiohttp.ClientSession, sidecar: Sidecar) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            await sidecar.stats(session)
            return
        except aiohttp.ClientError:
            if time.monotonic() > deadline or sidecar.process.returncode is not None:
                raise
            await asyncio.sleep(0.05)
