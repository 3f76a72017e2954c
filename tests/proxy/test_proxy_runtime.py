"""Config taking effect: Runtime.apply, the admin endpoints, and `tracemesh proxy --config FILE` as a process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
import yaml
from proxy_harness import TRACED, Origin, read_response, server_config, sidecar

from tracemesh_sidecar.config.model import TracingConfig, TracingPolicy
from tracemesh_sidecar.proxy.file_source import FileConfigSource


async def _get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


async def test_reload_keeps_an_open_keep_alive_connection_and_config_dump_shows_the_new_version(
        origin: Origin) -> None:
    async with sidecar(server_config(origin.port)) as server_side:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: r\r\n\r\n")
        assert (await asyncio.wait_for(read_response(reader), 5)).status == 200

        untraced = TracingConfig(client=TRACED, server=TracingPolicy(enabled=False))
        await server_side.runtime.apply(replace(server_config(origin.port), version="2", tracing=untraced))

        writer.write(b"GET /echo HTTP/1.1\r\nHost: r\r\n\r\n")
        second = await asyncio.wait_for(read_response(reader), 5)
        writer.close()
        status, text = await _get(server_side.admin_port(), "/config_dump")
        assert server_side.exporters.providers[-1][0].name == "zipkin"
    assert second.status == 200
    assert "x-b3-traceid" not in dict(json.loads(second.body)["headers"])  # the new config applies at once
    assert len(server_side.exporters.spans) == 1  # only the first request was traced
    assert status == 200
    assert json.loads(text)["version"] == "2"


async def test_a_request_in_flight_finishes_on_the_config_it_started_with(origin: Origin) -> None:
    async with sidecar(server_config(origin.port)) as server_side:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(b"GET /slow?delay=0.2 HTTP/1.1\r\nHost: r\r\n\r\n")
        await asyncio.sleep(0.05)
        untraced = TracingConfig(client=TRACED, server=TracingPolicy(enabled=False))
        await server_side.runtime.apply(replace(server_config(origin.port), version="2", tracing=untraced))
        response = await asyncio.wait_for(read_response(reader), 5)
        writer.close()
        spans = await server_side.exporters.wait_spans(1)
    assert response.status == 200
    assert spans[0].tags["http.status_code"] == "200"


async def test_a_changed_listener_address_is_rebound(origin: Origin) -> None:
    async with sidecar(server_config(origin.port)) as server_side:
        old_port = server_side.inbound_port
        config = server_config(origin.port)
        moved = replace(config, version="2", inbound=replace(
            config.inbound, ports=(replace(config.inbound.ports[0], listen="127.0.0.2:0"),)))
        old_reader, old_writer = await asyncio.open_connection("127.0.0.1", old_port)
        await server_side.runtime.apply(moved)
        new_port = server_side.inbound_port
        reader, writer = await asyncio.open_connection("127.0.0.2", new_port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: r\r\n\r\n")
        assert (await asyncio.wait_for(read_response(reader), 5)).status == 200
        writer.close()
        old_writer.write(b"GET /echo HTTP/1.1\r\nHost: r\r\n\r\n")  # accepted before the move: still served
        assert (await asyncio.wait_for(read_response(old_reader), 5)).status == 200
        old_writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", old_port)


async def test_health_is_ready_once_a_config_is_in_force_and_stats_are_served(origin: Origin) -> None:
    async with sidecar(server_config(origin.port)) as server_side:
        assert await _get(server_side.admin_port("health"), "/healthz/ready") == (200, "LIVE\n")
        reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: r\r\n\r\n")
        await asyncio.wait_for(read_response(reader), 5)
        status, text = await _get(server_side.admin_port(), "/stats")
        _, clusters = await _get(server_side.admin_port(), "/clusters")
        prometheus_status, prometheus = await _get(server_side.admin_port("prometheus"), "/stats/prometheus")
        writer.close()
    assert status == 200
    assert prometheus_status == 200 and "tracemesh_inbound_downstream_rq_total_total 1" in prometheus
    assert "inbound.downstream_rq_total: 1\n" in text
    assert "inbound.downstream_cx_active: 1\n" in text
    assert json.loads(clusters)["idle_connections"] == {f"127.0.0.1:{origin.port}": 1}


async def test_a_broken_file_keeps_the_last_good_config(tmp_path: Path, origin: Origin,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(_document(origin.port, "1", 0))
    applied: list[str] = []

    async def apply(config: object) -> None:
        applied.append(config.version)  # type: ignore[attr-defined]

    source = FileConfigSource(path, apply, poll_interval_s=0.02)
    assert source.load().version == "1"
    watcher = asyncio.create_task(source.watch())
    try:
        path.write_text("node: {podName: x\n")  # not YAML
        await asyncio.sleep(0.15)
        path.write_text(_document(origin.port, "2", 0).replace("samplingPercentage: 100", "samplingPercentage: 300"))
        await asyncio.sleep(0.15)
        path.write_text(_document(origin.port, "3", 0))
        async with asyncio.timeout(2):
            while applied != ["3"]:
                await asyncio.sleep(0.02)
    finally:
        watcher.cancel()
    assert "not valid YAML" in caplog.text
    assert "tracing.server.samplingPercentage" in caplog.text
    assert "version 1 stays in force" in caplog.text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _document(app_port: int, version: str, listen_port: int, admin_port: int = 0, health_port: int = 0) -> str:
    return yaml.safe_dump({
        "version": version,
        "node": {"podName": "reviews-v1-abc", "namespace": "default", "canonicalService": "reviews"},
        "listeners": {"outbound": "off", "inbound": "off", "prometheus": "off",
                      "admin": f"127.0.0.1:{admin_port}" if admin_port else "off",
                      "health": f"127.0.0.1:{health_port}" if health_port else "off"},
        "inbound": {"ports": [{"port": 9080, "appPort": app_port,
                               **({"listen": f"127.0.0.1:{listen_port}"} if listen_port else {})}]},
        "tracing": {"server": {"samplingPercentage": 100}},
    })


async def test_tracemesh_proxy_command_reloads_on_change_and_drains_on_sigterm(tmp_path: Path,
                                                                              origin: Origin) -> None:
    listen, admin, health = _free_port(), _free_port(), _free_port()
    path = tmp_path / "proxy.yaml"
    path.write_text(_document(origin.port, "1", listen, admin, health))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracemesh_cli.main", "proxy", "--config", str(path), "--drain-timeout", "1",
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    if (await _get(health, "/healthz/ready"))[0] == 200:
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", listen)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: r\r\n\r\n")
        assert (await asyncio.wait_for(read_response(reader), 5)).status == 200

        path.write_text(_document(origin.port, "2", listen, admin, health))
        loop = asyncio.get_running_loop()
        changed_at = loop.time()
        async with asyncio.timeout(1.0):  # config effective in under a second
            while json.loads((await _get(admin, "/config_dump"))[1])["version"] != "2":
                await asyncio.sleep(0.02)
        assert loop.time() - changed_at < 1.0

        writer.write(b"GET /echo HTTP/1.1\r\nHost: r\r\n\r\n")  # the same connection survived the reload
        assert (await asyncio.wait_for(read_response(reader), 5)).status == 200
        writer.close()

        path.write_text("listeners: [")
        await asyncio.sleep(0.6)
        assert json.loads((await _get(admin, "/config_dump"))[1])["version"] == "2"

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "config version 2 applied" in log
    assert "rejected" in log and "version 2 stays in force" in log
