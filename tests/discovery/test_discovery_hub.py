"""ConfigHub: versions, long-poll wake-ups, one encoding per version, subscriber rows."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from tracemesh_operator.discovery import hub as hub_module
from tracemesh_operator.discovery.hub import ConfigHub
from tracemesh_sidecar.config import (
    NodeIdentity,
    OutboundConfig,
    ProxyConfig,
    ServiceEntry,
    TracingConfig,
    TracingPolicy,
    dump_proxy_config,
    parse_proxy_config,
)


def config(pod: str = "reviews-v1-abc", sampling: float = 1.0) -> ProxyConfig:
    policy = TracingPolicy(sampling_percentage=sampling)
    return ProxyConfig(node=NodeIdentity(pod_name=pod, namespace="default", pod_ip="10.0.0.1",
                                         canonical_service="reviews"),
                       tracing=TracingConfig(client=policy, server=policy))


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_set_versions_only_real_changes() -> None:
    hub = ConfigHub()
    first = hub.set("default/a", config())
    assert hub.get("default/a") == first and hub.keys() == ["default/a"]
    assert hub.set("default/a", config()) is first  # same content: same version
    assert hub.set("default/a", config().with_version("999")) is first  # the caller's version is ignored
    second = hub.set("default/a", config(sampling=100.0))
    assert int(second.version) > int(first.version)
    assert second.tracing.client.sampling_percentage == 100.0


def test_versions_grow_across_pods_and_hub_restarts() -> None:
    clock = Clock()
    old = ConfigHub(clock)
    versions = [int(old.set(f"default/p{i}", config(f"p{i}")).version) for i in range(3)]
    assert versions == sorted(set(versions))
    clock.now += 1.0  # an operator restart a second later
    assert int(ConfigHub(clock).set("default/p0", config("p0")).version) > versions[-1]


async def test_wait_newer_answers_at_once_when_the_held_version_differs() -> None:
    hub = ConfigHub()
    current = hub.set("default/a", config())
    assert await hub.wait_newer("default/a", None, 5) == current
    assert await hub.wait_newer("default/a", "1", 5) == current  # anything else than what it holds


async def test_wait_newer_wakes_on_change_and_times_out_without_one() -> None:
    hub = ConfigHub()
    current = hub.set("default/a", config())
    assert await hub.wait_newer("default/a", current.version, 0.05) is None
    waiters = [asyncio.create_task(hub.wait_newer("default/a", current.version, 5)) for _ in range(50)]
    other = asyncio.create_task(hub.wait_newer("default/b", None, 0.2))
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    newer = hub.set("default/a", config(sampling=50.0))
    assert await asyncio.gather(*waiters) == [newer] * 50
    assert loop.time() - started < 0.5
    assert await other is None  # another pod's change wakes nobody there


async def test_wait_for_a_pod_not_compiled_yet() -> None:
    hub = ConfigHub()
    waiter = asyncio.create_task(hub.wait_newer("default/new", None, 5))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    current = hub.set("default/new", config("new"))
    assert await asyncio.wait_for(waiter, 1) == current


async def test_remove_wakes_waiters_who_then_keep_waiting() -> None:
    hub = ConfigHub()
    current = hub.set("default/a", config())
    waiter = asyncio.create_task(hub.wait_newer("default/a", current.version, 0.2))
    await asyncio.sleep(0.01)
    hub.remove("default/a")
    assert hub.get("default/a") is None
    assert await waiter is None


def test_each_version_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    encodings: list[object] = []
    encode = hub_module._encode
    monkeypatch.setattr(hub_module, "_encode", lambda document: encodings.append(document) or encode(document))
    hub = ConfigHub()
    current = hub.set("default/a", config())
    body = hub.encoded("default/a", current)
    assert hub.encoded("default/a", current) == body
    assert len(encodings) == 2  # the pod's own part and the (empty) registry, each once
    assert json.loads(body)["version"] == current.version
    assert json.loads(body)["node"]["podName"] == "reviews-v1-abc"
    stale = replace(current, version="1")
    assert json.loads(hub.encoded("default/a", stale))["version"] == "1"  # not the current one: encoded afresh


def test_pods_share_one_encoding_of_the_registry_and_bodies_read_as_the_whole_document() -> None:
    registry = tuple(ServiceEntry(f"s{i}.default.svc.cluster.local", 9080, (f"10.244.0.{i}:9080",), (f"10.96.0.{i}",))
                     for i in range(1, 50))
    hub = ConfigHub()
    configs = [hub.set(f"default/{pod}", replace(config(pod), outbound=OutboundConfig(services=registry)))
               for pod in ("a", "b")]
    bodies = [hub.encoded(f"default/{pod}", c) for pod, c in zip("ab", configs, strict=True)]
    for body, pushed in zip(bodies, configs, strict=True):
        assert body == json.dumps(dump_proxy_config(pushed), separators=(",", ":")).encode()
        assert parse_proxy_config(json.loads(body)) == pushed
    assert hub._shared_services.encoded(registry) is \
        hub._shared_services.encoded(configs[1].outbound.services)


def test_connected_rows_follow_polls_acks_and_forget_the_gone() -> None:
    clock = Clock()
    hub = ConfigHub(clock)
    current = hub.set("default/a", config())
    hub.poll_started("default/a", "10.0.0.1", None, None)
    (row,) = hub.connected()
    assert (row.pod_key, row.peer, row.version_sent, row.version_in_force) == (
        "default/a", "10.0.0.1", current.version, None)
    assert row.connected and not row.synced
    hub.poll_ended("default/a")
    hub.poll_started("default/a", "10.0.0.1", current.version, None)
    (row,) = hub.connected()
    assert row.synced and row.error is None
    hub.poll_ended("default/a")
    hub.poll_started("default/b", "10.0.0.2", "5", "config rejected: bad")
    rows = {row.pod_key: row for row in hub.connected()}
    assert rows["default/b"].version_sent is None and rows["default/b"].error == "config rejected: bad"
    hub.poll_ended("default/b")
    clock.now += 60
    assert not any(row.connected for row in hub.connected())
    clock.now += 600
    assert hub.connected() == []
