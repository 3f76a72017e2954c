"""SIGTERM as pilot-agent handles it (pkg/envoy/agent.go terminate(), pkg/envoy/admin.go DrainListeners):
inbound drains (`drain_listeners?inboundonly&graceful`: HTTP/1.1 answers carry `connection: close`),
outbound serves the app on until the drain ends, and the settings come from the container's environment."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp
import pytest
from proxy_harness import Origin, Response, read_response, server_config, sidecar

from tracemesh_sidecar.config import ConfigError
from tracemesh_sidecar.config.model import OutboundConfig, ProxyConfig, ServiceEntry
from tracemesh_sidecar.proxy.drain import wait_for_drain
from tracemesh_sidecar.proxy.termination import ACTIVE_CONNECTION_CHECK_S, DrainPlan, drain_plan

GET = b"GET /echo HTTP/1.1\r\nHost: reviews.default.svc.cluster.local:9080\r\n\r\n"


def test_the_drain_plan_is_read_from_proxy_config_and_proxy_metadata_variables() -> None:
    assert drain_plan({}) == DrainPlan(5.0, False, 5.0)  # Istio's defaults
    plan = drain_plan({"PROXY_CONFIG": '{"terminationDrainDuration": "7.5s", "tracing": {}}',
                       "EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "true", "MINIMUM_DRAIN_DURATION": "1m"})
    assert plan == DrainPlan(7.5, True, 60.0)
    assert drain_plan({"EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "0"}).exit_on_zero_active_connections is False


@pytest.mark.parametrize(("environ", "field"), [
    ({"PROXY_CONFIG": "{not json"}, "PROXY_CONFIG"),
    ({"PROXY_CONFIG": '{"terminationDrainDuration": "five"}'}, "PROXY_CONFIG.terminationDrainDuration"),
    ({"EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "yes"}, "EXIT_ON_ZERO_ACTIVE_CONNECTIONS"),
    ({"MINIMUM_DRAIN_DURATION": "5"}, "MINIMUM_DRAIN_DURATION"),
])
def test_a_malformed_setting_names_the_variable(environ: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as raised:
        drain_plan(environ)
    assert raised.value.field == field


async def test_exit_on_zero_waits_the_minimum_then_polls_until_no_connection_is_active() -> None:
    slept: list[float] = []
    active = [3, 2, 0]

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    await wait_for_drain(DrainPlan(9.0, True, 2.0), lambda: active.pop(0), sleep)
    assert slept == [2.0, ACTIVE_CONNECTION_CHECK_S, ACTIVE_CONNECTION_CHECK_S]
    slept.clear()
    await wait_for_drain(DrainPlan(9.0, False, 2.0), lambda: 1, sleep)
    assert slept == [9.0]  # the drain duration, whatever is open


def _both_directions(origin_port: int) -> ProxyConfig:
    """One sidecar with an inbound port in front of the origin and an outbound listener that reaches it."""
    config = server_config(origin_port)
    return replace(config, listeners=replace(config.listeners, outbound="127.0.0.1:0"),
                   outbound=OutboundConfig(services=(ServiceEntry(host="reviews.default.svc.cluster.local", port=9080,
                                                                  endpoints=(f"127.0.0.1:{origin_port}",)),)))


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes = GET) -> Response:
    writer.write(raw)
    return await asyncio.wait_for(read_response(reader), 5)


async def test_sigterm_drains_inbound_while_outbound_serves_and_ends_once_nothing_is_active(origin: Origin) -> None:
    async with sidecar(_both_directions(origin.port)) as side:
        runtime = side.runtime
        inbound, outbound = side.inbound_port, side.outbound_port
        in_flight = await asyncio.open_connection("127.0.0.1", inbound)
        idle_inbound = await asyncio.open_connection("127.0.0.1", inbound)
        idle_outbound = await asyncio.open_connection("127.0.0.1", outbound)
        assert (await _ask(*idle_inbound)).header("connection") is None  # keep-alive before the drain
        assert (await _ask(*idle_outbound)).status == 200
        in_flight[1].write(b"GET /slow?delay=0.5 HTTP/1.1\r\nHost: r\r\n\r\n")
        async with asyncio.timeout(5):
            while not any(seen["path"].startswith("/slow") for seen in origin.requests):  # type: ignore[union-attr]
                await asyncio.sleep(0.01)

        terminated = asyncio.create_task(runtime.terminate(DrainPlan(60.0, True, 0.0)))
        await asyncio.sleep(0)
        assert runtime.draining
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{side.admin_port('health')}/healthz/ready") as ready:
            assert ready.status == 503 and "draining" in await ready.text()
        with pytest.raises(OSError):  # no new inbound connection
            await asyncio.open_connection("127.0.0.1", inbound)

        slow = await asyncio.wait_for(read_response(in_flight[0]), 5)  # the request in flight is answered
        assert (slow.status, slow.body, slow.header("connection")) == (200, b"late", "close")
        assert await asyncio.wait_for(in_flight[0].read(), 5) == b""  # ... and its connection closed after
        again = await _ask(*idle_inbound)  # the idle keep-alive connection's next request: answered, told to close
        assert (again.status, again.header("connection")) == (200, "close")
        assert await asyncio.wait_for(idle_inbound[0].read(), 5) == b""

        kept = await _ask(*idle_outbound)  # outbound serves the app on, keep-alive included
        assert (kept.status, kept.header("connection")) == (200, None)
        fresh = await asyncio.open_connection("127.0.0.1", outbound)  # new outbound connections are taken
        assert (await _ask(*fresh)).status == 200
        assert not terminated.done()  # two outbound connections are still open
        for _, writer in (idle_outbound, fresh):
            writer.close()
        await asyncio.wait_for(terminated, 5)  # exit on zero: ends once they are closed
        for _, writer in (in_flight, idle_inbound):
            writer.close()
    server_spans = [span for _, span in side.exporters.spans if span.kind == "SERVER"]
    client_spans = [span for _, span in side.exporters.spans if span.kind == "CLIENT"]
    assert len(server_spans) == 3 and len(client_spans) == 3  # every request answered was reported


async def test_at_the_end_of_the_drain_duration_open_connections_are_closed(origin: Origin) -> None:
    async with sidecar(_both_directions(origin.port)) as side:
        outbound = side.outbound_port
        reader, writer = await asyncio.open_connection("127.0.0.1", outbound)
        assert (await _ask(reader, writer)).status == 200
        await asyncio.wait_for(side.runtime.terminate(DrainPlan(0.2, False, 5.0)), 5)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the proxy, which has stopped
        writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", outbound)


async def test_a_config_pushed_while_draining_does_not_reopen_inbound(origin: Origin) -> None:
    async with sidecar(_both_directions(origin.port)) as side:
        inbound = side.inbound_port
        side.runtime.drain_inbound()
        await side.runtime.apply(replace(_both_directions(origin.port), version="2"))
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", inbound)
        assert side.runtime.config is not None and side.runtime.config.version == "2"


async def test_the_pre_stop_drain_makes_sigterm_stop_at_once(origin: Origin) -> None:
    """Native sidecars: the preStop hook POSTs /drain when the pod starts shutting down; SIGTERM comes once the
    apps have exited, and the proxy stops without waiting out a drain duration (agent.go case 4)."""
    async with sidecar(_both_directions(origin.port)) as side:
        async with aiohttp.ClientSession() as session, \
                session.post(f"http://127.0.0.1:{side.admin_port()}/drain") as drained:
            assert drained.status == 200
        assert side.runtime.draining and not side.runtime.ready
        await asyncio.wait_for(side.runtime.terminate(DrainPlan(3600.0, False, 5.0)), 5)

