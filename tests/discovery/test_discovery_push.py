"""Config push end to end: the real server on 127.0.0.1, the sidecar's real client, real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tracemesh_operator.discovery import server
from tracemesh_operator.discovery.hub import ConfigHub
from tracemesh_operator.proxy_status_cli import render_table
from tracemesh_sidecar.backoff import jittered_backoff
from tracemesh_sidecar.config import NodeIdentity, ProxyConfig, TracingConfig, TracingPolicy, dump_proxy_config
from tracemesh_sidecar.discovery import DiscoveryClient
from tracemesh_sidecar.discovery.client import BACKOFF_BASE_S
from tracemesh_sidecar.stats import Stats

POD = "default/reviews-v1-abc"


def config(sampling: float, pod: str = "reviews-v1-abc") -> ProxyConfig:
    policy = TracingPolicy(sampling_percentage=sampling)
    return ProxyConfig(node=NodeIdentity(pod_name=pod, namespace="default", pod_ip="10.0.0.1",
                                         canonical_service="reviews"),
                       tracing=TracingConfig(client=policy, server=policy))


async def start(hub: ConfigHub, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = await server.start_server(hub, "127.0.0.1", port)
    return runner, server.bound_port(runner)


class Sidecar:
    """The client as the proxy runs it, recording every config it applies."""

    def __init__(self, port: int, wait_s: float = 5.0, apply: Callable[[ProxyConfig], Any] | None = None) -> None:
        self.applied: list[ProxyConfig] = []
        self.changed = asyncio.Event()
        self.stats = Stats()
        self.client = DiscoveryClient(f"127.0.0.1:{port}", "default", "reviews-v1-abc", apply or self.apply,
                                      self.stats, max_backoff_s=0.2, wait_s=wait_s)
        self.task = asyncio.create_task(self.client.run())

    def apply(self, config: ProxyConfig) -> None:
        self.applied.append(config)
        self.changed.set()

    async def next_config(self, timeout_s: float = 3.0) -> ProxyConfig:
        await asyncio.wait_for(self.changed.wait(), timeout_s)
        self.changed.clear()
        return self.applied[-1]

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def hub_server() -> AsyncIterator[tuple[ConfigHub, int]]:
    hub = ConfigHub()
    runner, port = await start(hub)
    yield hub, port
    await runner.cleanup()


async def test_full_config_on_connect_then_every_push(hub_server: tuple[ConfigHub, int]) -> None:
    hub, port = hub_server
    first = hub.set(POD, config(1.0))
    sidecar = Sidecar(port)
    try:
        received = await sidecar.next_config()
        assert received == first  # the whole document, version included
        assert sidecar.client.version_in_force == first.version
        loop = asyncio.get_running_loop()
        for sampling in (100.0, 0.0, 25.0):
            started = loop.time()
            pushed = hub.set(POD, config(sampling))
            received = await sidecar.next_config()
            assert loop.time() - started < 1.0
            assert (received.version, received.tracing.client.sampling_percentage) == (pushed.version, sampling)
        assert len(sidecar.applied) == 4
    finally:
        await sidecar.stop()


async def test_proxy_status_shows_the_version_each_sidecar_runs(hub_server: tuple[ConfigHub, int]) -> None:
    hub, port = hub_server
    current = hub.set(POD, config(1.0))
    sidecar = Sidecar(port)
    try:
        await sidecar.next_config()
        rows: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as session:
            for _ in range(50):  # the ack rides on the next poll, a moment after the apply
                async with session.get(f"http://127.0.0.1:{port}/v1/proxies") as response:
                    rows = (await response.json())["proxies"]
                if rows and rows[0]["synced"]:
                    break
                await asyncio.sleep(0.02)
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
        (row,) = rows
        assert (row["pod"], row["versionSent"], row["versionInForce"], row["connected"]) == (
            POD, current.version, current.version, True)
        table = render_table(rows, row["lastSeen"] + 3)
        assert "reviews-v1-abc.default  SYNCED" in table and "3s ago" in table and current.version in table
    finally:
        await sidecar.stop()


async def test_unchanged_poll_answers_304_after_the_wait(hub_server: tuple[ConfigHub, int]) -> None:
    hub, port = hub_server
    current = hub.set(POD, config(1.0))
    url = f"http://127.0.0.1:{port}/v1/proxy-config/default/reviews-v1-abc"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, params={"version": current.version, "wait": "100ms"}) as response:
            assert response.status == 304
        async with session.get(url, params={"wait": "soon"}) as response:
            assert response.status == 400
            assert "wait" in await response.text()
        async with session.get(url) as response:
            document = await response.json()
    assert document == dump_proxy_config(current)


async def test_last_config_kept_while_the_operator_is_down_then_resubscribed() -> None:
    hub = ConfigHub()
    runner, port = await start(hub)
    hub.set(POD, config(10.0))
    sidecar = Sidecar(port, wait_s=30.0)
    try:
        held = await sidecar.next_config()
        await runner.cleanup()  # the operator goes away, mid long-poll
        for _ in range(100):
            if sidecar.stats.get("discovery.connect_failures") >= 2:
                break
            await asyncio.sleep(0.05)
        assert sidecar.stats.get("discovery.connect_failures") >= 2  # retried, with backoff
        assert sidecar.client.version_in_force == held.version and sidecar.applied == [held]
        restarted = ConfigHub()  # a new operator process: new hub, new versions
        runner, _ = await start(restarted, port)
        newer = restarted.set(POD, config(100.0))
        received = await sidecar.next_config(timeout_s=5.0)
        assert received.version == newer.version and received.tracing.client.sampling_percentage == 100.0
        assert sidecar.stats.get("discovery.connected") == 1
    finally:
        await sidecar.stop()
        await runner.cleanup()


class ScriptedServer:
    """A push server that answers from a script, to send what the real one never would."""

    def __init__(self, answers: list[tuple[int, bytes, str]]) -> None:
        self.answers = answers
        self.queries: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.queries.append(dict(request.query))
        if not self.answers:
            await asyncio.sleep(0.2)
            return web.Response(status=304)
        status, body, version = self.answers.pop(0)
        return web.Response(status=status, body=body, headers={"X-Tracemesh-Version": version})

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/v1/proxy-config/{namespace}/{pod}", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        return int(self.runner.addresses[0][1])


def document(sampling: float, version: str, pod: str = "reviews-v1-abc") -> bytes:
    return json.dumps(dump_proxy_config(config(sampling, pod).with_version(version))).encode()


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("bad", [
    b"{not json",
    json.dumps({"version": "2", "node": {"podName": "reviews-v1-abc", "namespace": "default",
                                         "canonicalService": "reviews"},
                "tracing": {"client": {"samplingPercentage": 500}}}).encode(),
    document(5.0, "2", pod="someone-else"),
])
async def test_bad_document_is_rejected_and_the_last_good_one_kept(bad: bytes) -> None:
    scripted = ScriptedServer([(200, document(1.0, "1"), "1"), (200, bad, "2"), (200, document(7.0, "3"), "3")])
    port = await scripted.start()
    sidecar = Sidecar(port)
    try:
        await until(lambda: len(scripted.queries) >= 3, "the poll after the bad document")
        # The poll after the bad one waits for a version past it, and says why it was refused.
        assert scripted.queries[2]["version"] == "2" and scripted.queries[2]["applied"] == "1"
        assert scripted.queries[2]["error"].startswith("config rejected: ")
        await until(lambda: len(sidecar.applied) == 2, "the good document after the bad one")
        assert [c.version for c in sidecar.applied] == ["1", "3"]
        assert sidecar.stats.get("discovery.configs_rejected") == 1
        await until(lambda: len(scripted.queries) >= 4, "the ack")
        assert scripted.queries[3]["applied"] == "3" and "error" not in scripted.queries[3]
    finally:
        await sidecar.stop()
        assert scripted.runner is not None
        await scripted.runner.cleanup()


async def test_failing_apply_keeps_the_subscription_alive() -> None:
    calls: list[str] = []

    async def apply(config: ProxyConfig) -> None:
        calls.append(config.version)
        if config.version == "1":
            raise RuntimeError("listener port taken")

    scripted = ScriptedServer([(200, document(1.0, "1"), "1"), (503, b"overloaded", ""),
                               (200, document(2.0, "2"), "2")])
    port = await scripted.start()
    sidecar = Sidecar(port, apply=apply)
    try:
        await until(lambda: calls == ["1", "2"], "the second config after a failed apply and a 503")
        await until(lambda: sidecar.client.version_in_force == "2", "version 2 in force")
        assert sidecar.stats.get("discovery.connect_failures") == 1
    finally:
        await sidecar.stop()
        assert scripted.runner is not None
        await scripted.runner.cleanup()


def test_backoff_grows_is_capped_and_jittered() -> None:
    assert jittered_backoff(0, BACKOFF_BASE_S, 30, lambda: 0.0) == 0.25
    assert jittered_backoff(0, BACKOFF_BASE_S, 30, lambda: 1.0) == 0.5
    assert jittered_backoff(3, BACKOFF_BASE_S, 30, lambda: 1.0) == 4.0
    assert jittered_backoff(10, BACKOFF_BASE_S, 30, lambda: 1.0) == 30.0
    assert jittered_backoff(1000, BACKOFF_BASE_S, 30, lambda: 0.0) == 15.0



async def test_bad_document_without_a_version_backs_off_instead_of_refetching() -> None:
    scripted = ScriptedServer([(200, b"{not json", ""), (200, document(3.0, "1"), "1")])
    port = await scripted.start()
    sidecar = Sidecar(port)
    try:
        await until(lambda: len(sidecar.applied) == 1, "the good document")
        assert sidecar.stats.get("discovery.connect_failures") == 1
        assert sidecar.stats.get("discovery.configs_rejected") == 1
        assert scripted.queries[1]["error"].startswith("config rejected: ")
    finally:
        await sidecar.stop()
        assert scripted.runner is not None
        await scripted.runner.cleanup()
