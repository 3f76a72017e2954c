"""MeshState and the networking API: a broken VirtualService keeps its last good routes with Ready=False, and a
destination that cannot be resolved is reported until its Service appears."""

from __future__ import annotations

from typing import Any

from tracemesh_operator.discovery.hub import ConfigHub
from tracemesh_operator.state import MeshState, World
from tracemesh_sidecar.config import ProxyConfig

POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "productpage-1", "namespace": "default", "labels": {"app": "productpage"}},
       "spec": {"containers": [{"ports": [{"containerPort": 9080}]}]}, "status": {"podIP": "10.0.0.1"}}
REVIEWS = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "reviews", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"clusterIP": "10.96.0.9", "selector": {"app": "reviews"},
                    "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}}


def virtual_service(timeout: str, generation: int = 1) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default", "uid": "vs-1", "generation": generation,
                         "creationTimestamp": "2026-01-02T00:00:00Z"},
            "spec": {"hosts": ["reviews"], "http": [{"timeout": timeout, "route": [
                {"destination": {"host": "reviews", "subset": "v1"}}]}]}}


def world(vs: dict[str, Any], services: bool = True) -> World:
    return World(pods={"default": [POD]}, telemetries={}, meshconfigs={},
                 services={"default/reviews": [REVIEWS]} if services else {},
                 virtual_services={"default": [vs]})


def timeout_in_force(hub: ConfigHub) -> float | None:
    config = hub.get("default/productpage-1")
    assert config is not None
    table = config.route_table("outbound")
    return table.virtual_hosts[0].routes[0].timeout_s if table else None


def test_a_broken_virtual_service_keeps_its_last_good_routes_and_says_so() -> None:
    hub = ConfigHub()
    state = MeshState(hub, None)
    good = virtual_service("10s")
    [update] = state.networking_changed(good, False, world(good))
    assert (update.condition.ready, update.honoured.ready) == (True, True)
    assert timeout_in_force(hub) == 10.0

    broken = virtual_service("soon", generation=2)
    [update] = state.networking_changed(broken, False, world(broken))
    assert not update.condition.ready and update.condition.reason == "InvalidVirtualService"
    assert "spec.http[0].timeout" in update.condition.message
    assert "its previous version stays in force" in update.condition.message
    assert timeout_in_force(hub) == 10.0

    fixed = virtual_service("3s", generation=3)
    [update] = state.networking_changed(fixed, False, world(fixed))
    assert update.condition.ready and timeout_in_force(hub) == 3.0
    # Deleted: its routes go.
    state.networking_changed(fixed, True, World(pods={"default": [POD]}, telemetries={}, meshconfigs={},
                                                services={"default/reviews": [REVIEWS]}))
    assert timeout_in_force(hub) is None


def test_a_destination_is_reported_until_its_service_appears() -> None:
    hub = ConfigHub()
    state = MeshState(hub, None)
    vs = virtual_service("10s")
    [update] = state.networking_changed(vs, False, world(vs, services=False))
    assert update.condition.ready and not update.honoured.ready
    assert update.honoured.reason == "UnresolvedDestination"
    assert timeout_in_force(hub) is None  # no route without a port to send it to
    [update] = state.networking_statuses(world(vs))
    assert update.honoured.ready


class CountingHub(ConfigHub):
    """The ConfigHub, counting the configs handed to it."""

    def __init__(self) -> None:
        super().__init__()
        self.sets = 0

    def set(self, pod_key: str, config: ProxyConfig) -> ProxyConfig:
        self.sets += 1
        return super().set(pod_key, config)


def test_a_status_only_event_recompiles_nothing() -> None:
    hub = CountingHub()
    state = MeshState(hub, None)
    vs = virtual_service("10s")
    state.networking_changed(vs, False, world(vs))
    compiled = hub.sets
    with_status = dict(vs, status={"conditions": [{"type": "Ready", "status": "True", "reason": "Accepted",
                                                   "message": "the configuration is in force"}]})
    state.networking_changed(with_status, False, world(with_status))
    assert hub.sets == compiled
    changed = virtual_service("5s", generation=2)
    state.networking_changed(changed, False, world(changed))
    assert hub.sets > compiled
