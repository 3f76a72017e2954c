"""`tracemesh proxy-status`: every connected sidecar and the version it runs, like istioctl proxy-status."""

from __future__ import annotations

import asyncio
import json

import pytest

from tracemesh_cli.main import main
from tracemesh_operator.discovery import server
from tracemesh_operator.discovery.hub import ConfigHub
from tracemesh_sidecar.config import NodeIdentity, ProxyConfig


def config(pod: str) -> ProxyConfig:
    return ProxyConfig(node=NodeIdentity(pod_name=pod, namespace="default", canonical_service="reviews",
                                         pod_ip="10.0.0.9"))


async def test_lists_synced_stale_rejected_and_unsent(capsys: pytest.CaptureFixture[str]) -> None:
    hub = ConfigHub()
    synced = hub.set("default/reviews-v1-a", config("reviews-v1-a"))
    stale = hub.set("default/reviews-v2-b", config("reviews-v2-b"))
    hub.poll_started("default/reviews-v1-a", "10.0.0.1", synced.version, None)
    hub.poll_started("default/reviews-v2-b", "10.0.0.2", "1", f"config rejected: version {stale.version} bad")
    hub.poll_started("default/ratings-v1-c", "10.0.0.3", None, None)
    runner = await server.start_server(hub, "127.0.0.1", 0)
    address = f"127.0.0.1:{server.bound_port(runner)}"
    try:
        assert await asyncio.to_thread(main, ["proxy-status", "--discovery", address]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split() == ["NAME", "STATUS", "VERSION", "SENT", "VERSION", "IN", "FORCE", "LAST", "SEEN",
                                    "PEER"]
        rows = {line.split()[0]: line.split() for line in table[1:4]}
        assert rows["reviews-v1-a.default"][1:3] == ["SYNCED", synced.version]
        assert rows["reviews-v2-b.default"][1:4] == ["STALE", stale.version, "1"]
        assert rows["ratings-v1-c.default"][1:3] == ["NOT", "SENT"]
        assert table[4] == f"reviews-v2-b.default: config rejected: version {stale.version} bad"
        assert await asyncio.to_thread(main, ["proxy-status", "--discovery", f"http://{address}", "-o", "json"]) == 0
        assert {row["pod"] for row in json.loads(capsys.readouterr().out)} == {
            "default/reviews-v1-a", "default/reviews-v2-b", "default/ratings-v1-c"}
    finally:
        await runner.cleanup()


async def test_unreachable_discovery_says_how_to_reach_it(capsys: pytest.CaptureFixture[str]) -> None:
    runner = await server.start_server(ConfigHub(), "127.0.0.1", 0)
    address = f"127.0.0.1:{server.bound_port(runner)}"
    await runner.cleanup()  # nothing listens there now
    assert await asyncio.to_thread(main, ["proxy-status", "--discovery", address]) == 1
    assert "port-forward svc/tracemesh-discovery 15010" in capsys.readouterr().err
