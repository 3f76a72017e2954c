"""`tracemesh proxy --discovery`: the real proxy process takes the operator's pushes; config_dump shows the version."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tracemesh_operator.discovery import server
from tracemesh_operator.discovery.hub import ConfigHub
from tracemesh_sidecar.config import (
    Listeners,
    NodeIdentity,
    ProxyConfig,
    TracingConfig,
    TracingPolicy,
    dump_proxy_config,
)

TRACEMESH = [sys.executable, "-m", "tracemesh_cli.main"]


def pod_config(admin: str, sampling: float) -> ProxyConfig:
    # Only the admin listener, on a free port: the pod's fixed ports would collide with parallel tests.
    listeners = Listeners(outbound=None, inbound=None, admin=admin, health=None, prometheus=None)
    policy = TracingPolicy(sampling_percentage=sampling)
    return ProxyConfig(node=NodeIdentity(pod_name="ratings-v1-x", namespace="default", canonical_service="ratings",
                                         pod_ip="127.0.0.1"),
                       listeners=listeners, tracing=TracingConfig(client=policy, server=policy))


@pytest.fixture
async def hub_port() -> AsyncIterator[tuple[ConfigHub, int]]:
    hub = ConfigHub()
    runner = await server.start_server(hub, "127.0.0.1", 0)
    yield hub, server.bound_port(runner)
    await runner.cleanup()


async def config_dump(session: aiohttp.ClientSession, admin: str) -> dict[str, Any] | None:
    try:
        async with session.get(f"http://{admin}/config_dump") as response:
            return dict(await response.json()) if response.status == 200 else None
    except aiohttp.ClientError:
        return None


async def wait_for_version(session: aiohttp.ClientSession, admin: str, version: str) -> dict[str, Any]:
    dump = None
    for _ in range(150):
        dump = await config_dump(session, admin)
        if dump is not None and dump["version"] == version:
            return dump
        await asyncio.sleep(0.02)
    raise AssertionError(f"config_dump never showed version {version}; last: {dump}")


async def test_proxy_runs_the_pushed_config_and_shows_its_version(
        hub_port: tuple[ConfigHub, int], tmp_path: Path, unused_tcp_port: int) -> None:
    hub, port = hub_port
    admin = f"127.0.0.1:{unused_tcp_port}"
    first = pod_config(admin, 1.0).with_version("0")
    config_file = tmp_path / "bootstrap.yaml"
    config_file.write_text(yaml.safe_dump(dump_proxy_config(first)))
    pushed = hub.set("default/ratings-v1-x", replace(first, tracing=pod_config(admin, 100.0).tracing))
    process = await asyncio.create_subprocess_exec(
        *TRACEMESH, "proxy", "--discovery", f"127.0.0.1:{port}", "--config", str(config_file),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env={**os.environ})
    try:
        async with aiohttp.ClientSession() as session:
            dump = await wait_for_version(session, admin, pushed.version)
            assert dump["tracing"]["client"]["samplingPercentage"] == 100.0
            loop = asyncio.get_running_loop()
            started = loop.time()
            newer = hub.set("default/ratings-v1-x", replace(pushed, tracing=pod_config(admin, 0.0).tracing))
            await wait_for_version(session, admin, newer.version)
            assert loop.time() - started < 1.0
        rows = hub.connected()
        assert [(row.pod_key, row.connected) for row in rows] == [("default/ratings-v1-x", True)]
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0, stderr.decode()


@pytest.mark.parametrize("args", [["--bootstrap-env"], [], ["--config", "x.yaml", "--bootstrap-env"]])
async def test_proxy_needs_one_first_config(args: list[str]) -> None:
    process = await asyncio.create_subprocess_exec(*TRACEMESH, "proxy", *args, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert b"--discovery HOST:PORT --bootstrap-env" in stderr
