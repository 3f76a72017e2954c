"""MeshState: the Honoured condition (accepted, not acted on) and Istio's mesh ConfigMap as the mesh config."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from test_state import MESH, Cluster, bookinfo, pod, telemetry

from tracemesh_operator.state import StatusUpdate


def honoured(updates: list[StatusUpdate]) -> dict[str, tuple[bool, str]]:
    return {u.body["metadata"]["name"]: (u.honoured.ready, u.honoured.reason) for u in updates}


def istio_configmap(mesh: dict[str, Any] | str, name: str = "istio") -> dict[str, Any]:
    text = mesh if isinstance(mesh, str) else yaml.safe_dump(mesh)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "istio-system"},
            "data": {"mesh": text}}


def test_a_telemetry_with_fields_not_acted_on_is_in_force_but_not_honoured() -> None:
    cluster = bookinfo()
    body = telemetry("default", "ns", {"randomSamplingPercentage": 50},
                     metrics=[{"providers": [{"name": "prometheus"}], "reportingInterval": "30s"}])
    [update] = cluster.apply(body)
    assert (update.condition.ready, update.condition.reason) == (True, "Accepted")
    assert (update.honoured.ready, update.honoured.reason) == (False, "UnsupportedField")
    assert "spec.metrics[0].reportingInterval" in update.honoured.message
    assert "not acted on" in update.honoured.message
    assert cluster.sampling("default/reviews-1") == 50.0  # what is acted on is in force


def test_a_plain_telemetry_is_honoured_and_a_rejected_one_points_at_ready() -> None:
    cluster = bookinfo()
    assert honoured(cluster.apply(telemetry("default", "ok", {"randomSamplingPercentage": 5}))) == {
        "ok": (True, "AllFieldsHonoured")}
    [update] = cluster.apply(telemetry("other", "bad", {"providers": [{"name": "nope"}]}))
    assert (update.condition.ready, update.honoured.ready, update.honoured.reason) == (
        False, False, "UnknownProvider")
    assert "see the Ready condition" in update.honoured.message


def test_a_mesh_config_with_fields_not_acted_on_is_in_force_but_not_honoured() -> None:
    cluster = bookinfo()
    mesh = copy.deepcopy(MESH)
    mesh["spec"]["extensionProviders"].append({"name": "dd", "datadog": {"service": "dd.svc", "port": 8126}})
    mesh["spec"]["outboundTrafficPolicy"] = {"mode": "REGISTRY_ONLY"}
    [update] = cluster.mesh(mesh)
    assert (update.condition.ready, update.honoured.ready, update.honoured.reason) == (
        True, False, "UnsupportedProvider")
    assert "spec.extensionProviders[1].datadog" in update.honoured.message
    assert "spec.outboundTrafficPolicy" in update.honoured.message


def test_istios_mesh_configmap_is_the_mesh_config_where_no_meshconfig_is() -> None:
    cluster = Cluster()
    cluster.add_pod(pod("default", "reviews-1", app="reviews"))
    mesh = {"enableTracing": True, "defaultConfig": {"tracing": {"sampling": 42}},
            "extensionProviders": [{"name": "jaeger", "opentelemetry": {
                "service": "jaeger-collector.istio-system.svc.cluster.local", "port": 4317}}],
            "defaultProviders": {"tracing": ["jaeger"]}}
    assert cluster.configmap(istio_configmap(mesh)) == []  # a ConfigMap has no status to write
    config = cluster.hub.get("default/reviews-1")
    assert config is not None and config.tracing.client.provider == "jaeger"
    assert config.providers[0].transport == "grpc" and cluster.sampling("default/reviews-1") == 42.0
    # Another ConfigMap (a revision's, `istio-canary`) is not the mesh config.
    cluster.configmap(istio_configmap({"enableTracing": False}, name="istio-canary"))
    assert cluster.sampling("default/reviews-1") == 42.0


def test_the_meshconfig_resource_takes_precedence_and_says_the_configmap_is_ignored() -> None:
    cluster = Cluster()
    cluster.add_pod(pod("default", "reviews-1", app="reviews"))
    cluster.configmap(istio_configmap({"defaultConfig": {"tracing": {"sampling": 42}}}))
    [update] = cluster.mesh(MESH)
    assert update.condition.ready and "ConfigMap istio-system/istio" in update.condition.message
    assert "ignored" in update.condition.message
    assert cluster.sampling("default/reviews-1") == 1.0
    cluster.mesh(MESH, deleted=True)  # without the MeshConfig, the ConfigMap applies
    assert cluster.sampling("default/reviews-1") == 42.0


def test_a_broken_configmap_keeps_the_last_good_mesh_config_and_is_reported() -> None:
    cluster = Cluster()
    cluster.add_pod(pod("default", "reviews-1", app="reviews"))
    cluster.configmap(istio_configmap({"defaultConfig": {"tracing": {"sampling": 42}}}))
    cluster.configmap(istio_configmap("defaultConfig: [unclosed"))
    assert cluster.sampling("default/reviews-1") == 42.0
    [report] = cluster.state.configmap_report(cluster.world)
    assert "ConfigMap istio-system/istio" in report and "not YAML" in report
    assert "previous mesh config stays in force" in report
    cluster.configmap(istio_configmap({"enableAutoMtls": True}))
    assert cluster.state.configmap_report(cluster.world) == [
        "ConfigMap istio-system/istio: spec.enableAutoMtls: is accepted (as Istio accepts it) but not acted on: "
        "tracemesh acts on tracing, metrics and access logs only; remove it, or keep it for Istio; it changes "
        "nothing here"]
