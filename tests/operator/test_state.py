"""MeshState: which pods an event recompiles, last-good semantics, and the Ready conditions it asks for."""

from __future__ import annotations

import copy
from typing import Any

from tracemesh_operator.conditions import status_patch
from tracemesh_operator.discovery.hub import ConfigHub
from tracemesh_operator.state import MeshState, StatusUpdate, World

MESH: dict[str, Any] = {"apiVersion": "tracemesh.io/v1alpha1", "kind": "MeshConfig",
        "metadata": {"name": "default", "namespace": "istio-system"},
        "spec": {"extensionProviders": [{"name": "zipkin", "zipkin": {"service": "zipkin.istio-system", "port": 9411}}],
                 "defaultProviders": {"tracing": ["zipkin"]}}}


def pod(namespace: str, name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"ports": [{"containerPort": 9080}]}]}, "status": {"podIP": "10.0.0.1"}}


def telemetry(namespace: str, name: str, rule: dict[str, Any], created: str = "2026-01-01T00:00:00Z",
              **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
            "spec": dict(spec, tracing=[rule])}


class Cluster:
    """The objects as kopf's indexes would hold them, and the state fed with each change."""

    def __init__(self) -> None:
        self.hub = ConfigHub()
        self.state = MeshState(self.hub, "tracemesh-discovery.istio-system.svc:15010")
        self.pods: dict[str, list[dict[str, Any]]] = {}
        self.telemetries: dict[str, list[dict[str, Any]]] = {}
        self.meshconfigs: dict[str, list[dict[str, Any]]] = {}
        self.configmaps: dict[str, list[dict[str, Any]]] = {}

    @property
    def world(self) -> World:
        return World(self.pods, self.telemetries, self.meshconfigs, mesh_configmaps=self.configmaps)

    def configmap(self, body: dict[str, Any], deleted: bool = False) -> list[StatusUpdate]:
        key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
        (self._drop if deleted else self._put)(self.configmaps, key, body)
        return self.state.mesh_changed(self.world)

    @staticmethod
    def _put(store: dict[str, list[dict[str, Any]]], key: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        store[key] = [b for b in store.get(key, []) if b["metadata"]["name"] != name] + [body]

    @staticmethod
    def _drop(store: dict[str, list[dict[str, Any]]], key: str, body: dict[str, Any]) -> None:
        store[key] = [b for b in store.get(key, []) if b["metadata"]["name"] != body["metadata"]["name"]]

    def mesh(self, body: dict[str, Any], deleted: bool = False) -> list[StatusUpdate]:
        key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
        (self._drop if deleted else self._put)(self.meshconfigs, key, body)
        return self.state.mesh_changed(self.world)

    def apply(self, body: dict[str, Any]) -> list[StatusUpdate]:
        self._put(self.telemetries, body["metadata"]["namespace"], body)
        return self.state.telemetry_changed(body, False, self.world)

    def delete(self, body: dict[str, Any]) -> list[StatusUpdate]:
        self._drop(self.telemetries, body["metadata"]["namespace"], body)
        return self.state.telemetry_changed(body, True, self.world)

    def add_pod(self, body: dict[str, Any]) -> list[StatusUpdate]:
        self._put(self.pods, body["metadata"]["namespace"], body)
        return self.state.pod_changed(body, False, self.world)

    def sampling(self, pod_key: str) -> float:
        config = self.hub.get(pod_key)
        assert config is not None
        assert config.tracing.client.sampling_percentage == config.tracing.server.sampling_percentage
        return config.tracing.client.sampling_percentage

    def versions(self) -> dict[str, str]:
        pod_keys = self.hub.keys()
        return {key: config.version for key in pod_keys if (config := self.hub.get(key)) is not None}


def bookinfo() -> Cluster:
    cluster = Cluster()
    cluster.mesh(MESH)
    for body in (pod("default", "reviews-1", app="reviews"), pod("default", "ratings-1", app="ratings"),
                 pod("other", "web-1", app="web")):
        cluster.add_pod(body)
    return cluster


def conditions(updates: list[StatusUpdate]) -> dict[str, tuple[bool, str]]:
    return {u.body["metadata"]["name"]: (u.condition.ready, u.condition.reason) for u in updates}


def test_pods_get_the_mesh_default_and_a_repeat_event_makes_no_new_version() -> None:
    cluster = bookinfo()
    assert cluster.sampling("default/reviews-1") == 1.0
    config = cluster.hub.get("default/reviews-1")
    assert config is not None and config.tracing.client.provider == "zipkin"
    before = cluster.versions()
    cluster.state.pod_changed(pod("default", "reviews-1", app="reviews"), False, cluster.world)
    cluster.mesh(MESH)
    assert cluster.versions() == before


def test_root_namespace_telemetry_touches_every_pod() -> None:
    cluster = bookinfo()
    updates = cluster.apply(telemetry("istio-system", "mesh-default", {"randomSamplingPercentage": 100}))
    assert conditions(updates) == {"mesh-default": (True, "Accepted")}
    pod_keys = cluster.hub.keys()
    assert {key: cluster.sampling(key) for key in pod_keys} == {
        "default/reviews-1": 100.0, "default/ratings-1": 100.0, "other/web-1": 100.0}


def test_a_root_namespace_telemetry_with_empty_match_labels_touches_every_pod() -> None:
    cluster = bookinfo()
    cluster.apply(telemetry("istio-system", "mesh-default", {"randomSamplingPercentage": 100},
                            selector={"matchLabels": {}}))
    pod_keys = cluster.hub.keys()
    assert {key: cluster.sampling(key) for key in pod_keys} == {
        "default/reviews-1": 100.0, "default/ratings-1": 100.0, "other/web-1": 100.0}


def test_namespace_telemetry_touches_only_its_namespace_and_deleting_it_restores_the_parent() -> None:
    cluster = bookinfo()
    cluster.apply(telemetry("istio-system", "mesh-default", {"randomSamplingPercentage": 100}))
    before = cluster.versions()
    namespace_wide = telemetry("default", "ns", {"randomSamplingPercentage": 50})
    cluster.apply(namespace_wide)
    after = cluster.versions()
    assert cluster.sampling("default/reviews-1") == cluster.sampling("default/ratings-1") == 50.0
    assert after["other/web-1"] == before["other/web-1"] and cluster.sampling("other/web-1") == 100.0
    cluster.delete(namespace_wide)
    assert cluster.sampling("default/reviews-1") == 100.0


def test_selector_telemetry_touches_the_pods_it_selects_before_and_after_a_change() -> None:
    cluster = bookinfo()
    selecting = telemetry("default", "sel", {"randomSamplingPercentage": 10},
                          selector={"matchLabels": {"app": "reviews"}})
    cluster.apply(selecting)
    assert (cluster.sampling("default/reviews-1"), cluster.sampling("default/ratings-1")) == (10.0, 1.0)
    moved = copy.deepcopy(selecting)
    moved["spec"]["selector"]["matchLabels"] = {"app": "ratings"}
    cluster.apply(moved)
    assert (cluster.sampling("default/reviews-1"), cluster.sampling("default/ratings-1")) == (1.0, 10.0)


def test_a_broken_update_keeps_the_last_good_version_in_force() -> None:
    cluster = bookinfo()
    good = telemetry("default", "ns", {"randomSamplingPercentage": 50})
    cluster.apply(good)
    version = cluster.versions()["default/reviews-1"]
    broken = telemetry("default", "ns", {"randomSamplingPercentage": 5, "providers": [{"name": "jaegr"}]})
    updates = cluster.apply(broken)
    assert conditions(updates) == {"ns": (False, "UnknownProvider")}
    assert "previous version stays in force" in updates[0].condition.message
    assert cluster.versions()["default/reviews-1"] == version and cluster.sampling("default/reviews-1") == 50.0
    fixed = telemetry("default", "ns", {"randomSamplingPercentage": 5, "providers": [{"name": "zipkin"}]})
    assert conditions(cluster.apply(fixed)) == {"ns": (True, "Accepted")}
    assert cluster.sampling("default/reviews-1") == 5.0


def test_a_new_broken_telemetry_changes_nothing() -> None:
    cluster = bookinfo()
    before = cluster.versions()
    updates = cluster.apply(telemetry("default", "bad", {"randomSamplingPercentage": 500}))
    assert conditions(updates) == {"bad": (False, "SamplingOutOfRange")}
    assert "ignored until it is fixed" in updates[0].condition.message
    assert cluster.versions() == before


def test_conflicting_namespace_telemetry_and_recovery_when_the_older_goes() -> None:
    cluster = bookinfo()
    older = telemetry("default", "older", {"randomSamplingPercentage": 40}, created="2026-01-01T00:00:00Z")
    newer = telemetry("default", "newer", {"randomSamplingPercentage": 60}, created="2026-01-02T00:00:00Z")
    cluster.apply(older)
    updates = cluster.apply(newer)
    assert conditions(updates) == {"newer": (False, "ConflictingTelemetry")}
    assert cluster.sampling("default/reviews-1") == 40.0
    assert conditions(cluster.delete(older)) == {"newer": (True, "Accepted")}
    assert cluster.sampling("default/reviews-1") == 60.0


def test_conflicting_selectors_are_reported_on_the_newer() -> None:
    cluster = bookinfo()
    cluster.apply(telemetry("default", "by-app", {"randomSamplingPercentage": 40},
                            selector={"matchLabels": {"app": "reviews"}}))
    updates = cluster.apply(telemetry("default", "by-name", {"randomSamplingPercentage": 60},
                                      selector={"matchLabels": {"app": "reviews"}}, created="2026-02-01T00:00:00Z"))
    assert conditions(updates) == {"by-name": (False, "ConflictingSelector")}
    assert cluster.sampling("default/reviews-1") == 40.0


def test_status_only_events_ask_for_nothing() -> None:
    cluster = bookinfo()
    body = telemetry("default", "ns", {"randomSamplingPercentage": 50})
    [update] = cluster.apply(body)
    version = cluster.versions()
    written = dict(body, status=status_patch(body, update.conditions, "2026-01-01T00:00:00Z"))
    assert cluster.apply(written) == []
    assert cluster.versions() == version


def test_mesh_config_status_and_last_good_mesh() -> None:
    cluster = bookinfo()
    other = copy.deepcopy(MESH)
    other["metadata"]["name"] = "extra"
    assert conditions(cluster.mesh(other)) == {"extra": (False, "NotUsed")}  # default: unchanged, not rewritten
    broken = copy.deepcopy(MESH)
    broken["spec"]["extensionProviders"][0]["zipkin"]["port"] = 0
    updates = cluster.mesh(broken)
    assert conditions(updates)["default"] == (False, "InvalidMeshConfig")
    assert "previous MeshConfig stays in force" in updates[0].condition.message
    config = cluster.hub.get("default/reviews-1")
    assert config is not None and config.providers[0].port == 9411


def test_a_deleted_pod_leaves_the_hub() -> None:
    cluster = bookinfo()
    body = pod("other", "web-1", app="web")
    cluster._drop(cluster.pods, "other", body)
    cluster.state.pod_changed(body, True, cluster.world)
    assert cluster.hub.get("other/web-1") is None


def test_a_telemetry_waiting_for_its_provider_applies_once_the_mesh_config_adds_it() -> None:
    cluster = bookinfo()
    waiting = telemetry("default", "ns", {"randomSamplingPercentage": 30, "providers": [{"name": "otel"}]})
    assert conditions(cluster.apply(waiting)) == {"ns": (False, "UnknownProvider")}
    assert cluster.sampling("default/reviews-1") == 1.0
    with_otel = copy.deepcopy(MESH)
    with_otel["spec"]["extensionProviders"].append(
        {"name": "otel", "opentelemetry": {"service": "otel-collector.observability", "port": 4318}})
    assert conditions(cluster.mesh(with_otel)) == {"ns": (True, "Accepted")}
    config = cluster.hub.get("default/reviews-1")
    assert config is not None and config.tracing.client.provider == "otel"
    assert cluster.sampling("default/reviews-1") == 30.0


def test_a_telemetry_deleted_and_created_again_gets_its_status_again() -> None:
    cluster = bookinfo()
    body = telemetry("default", "ns", {"randomSamplingPercentage": 50})
    assert conditions(cluster.apply(body)) == {"ns": (True, "Accepted")}
    cluster.delete(body)
    again = telemetry("default", "ns", {"randomSamplingPercentage": 50}, created="2026-03-01T00:00:00Z")
    assert conditions(cluster.apply(again)) == {"ns": (True, "Accepted")}


def test_a_status_that_could_not_be_written_is_asked_for_again() -> None:
    cluster = bookinfo()
    body = telemetry("default", "ns", {"randomSamplingPercentage": 50})
    [update] = cluster.apply(body)
    assert cluster.apply(body) == []  # written (as far as the state knows): not asked for twice
    cluster.state.status_not_written(update)
    assert conditions(cluster.apply(body)) == {"ns": (True, "Accepted")}
