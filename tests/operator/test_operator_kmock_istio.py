"""Acceptance against kmock: Istio's mesh ConfigMap as the mesh config, Istio's test configuration through the
real operator, and the Honoured condition with its Warning Event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from test_operator_kmock import INJECTED, TELEMETRIES, Sidecar, create, mesh, obj, telemetry, until

from tracemesh_operator.control_plane import ControlPlane

__all__ = ["mesh"]  # the fixture, shared with test_operator_kmock
OTELCOLLECTOR = (Path(__file__).resolve().parents[1] / "fixtures" / "istio" / "tests" / "integration" / "telemetry"
                 / "tracing" / "otelcollector")
MESHCONFIGS = "/apis/tracemesh.io/v1alpha1/namespaces/istio-system/meshconfigs"


def otelcollector_mesh() -> dict[str, Any]:
    values = yaml.safe_load((OTELCOLLECTOR / "control-plane-values.yaml").read_text())
    mesh_config: dict[str, Any] = values["meshConfig"]
    return mesh_config


def condition(emulator: kmock.KubernetesEmulator, resource: str, namespace: str, name: str,
              kind: str) -> dict[str, Any] | None:
    try:
        body = emulator.objects[resource, namespace, name].raw
    except KeyError:
        return None
    return next((c for c in (body.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def warned(emulator: kmock.KubernetesEmulator, reason: str) -> bool:
    return any(r.method == "POST" and r.url.path.endswith("/events") and r.data.get("reason") == reason
               and r.data.get("type") == "Warning" for r in emulator)


@pytest.fixture
async def bare(kmock: kmock.KubernetesEmulator, control_plane: ControlPlane) -> tuple[kmock.KubernetesEmulator, int]:
    """Namespaces and one injected pod, no MeshConfig resource; the operator running."""
    for name in ("istio-system", "echo"):
        await create(kmock, "/api/v1/namespaces", obj("v1", "Namespace", name,
                                                      metadata={"labels": {"istio-injection": "enabled"}}))
    await create(kmock, "/api/v1/namespaces/echo/pods", obj(
        "v1", "Pod", "server-1", "echo", metadata={"labels": {"app": "server"}, "annotations": INJECTED},
        spec={"containers": [{"name": "server", "ports": [{"containerPort": 8080}]}]}, status={"podIP": "10.244.0.7"}))
    assert control_plane.discovery_port is not None
    return kmock, control_plane.discovery_port


async def test_istios_mesh_configmap_configures_the_mesh_without_a_meshconfig(
        bare: tuple[kmock.KubernetesEmulator, int], monkeypatch: pytest.MonkeyPatch) -> None:
    emulator, port = bare
    # istiod's environment in Istio's otelcollector test; here the operator's (envName is read there).
    monkeypatch.setenv("OTEL_GRPC_AUTHORIZATION", "Bearer somerandomtoken")
    mesh_config = dict(otelcollector_mesh(), defaultProviders={"tracing": ["test-otel-grpc-auth"]},
                       defaultConfig={"tracing": {"sampling": 42}})
    await create(emulator, "/api/v1/namespaces/istio-system/configmaps", obj(
        "v1", "ConfigMap", "istio", "istio-system", data={"mesh": yaml.safe_dump(mesh_config)}))
    sidecar = Sidecar(port, "echo", "server-1")
    try:
        await sidecar.holds(42.0, timeout_s=5.0)
        config = sidecar.configs[-1]
        [provider] = config.providers
        assert (provider.name, provider.transport, provider.port) == ("test-otel-grpc-auth", "grpc", 5317)
        assert provider.headers == (("Authorization", "Bearer somerandomtoken"),)
        # The Dynatrace resource detector in it is not acted on: a ConfigMap has no status, so a Warning Event.
        await until(lambda: warned(emulator, "MeshConfigMap"))
    finally:
        await sidecar.close()


async def test_istios_otel_telemetry_is_ready_and_honoured_and_an_unhonoured_metrics_field_is_reported(
        mesh: tuple[kmock.KubernetesEmulator, ControlPlane]) -> None:
    emulator, _ = mesh
    resource = "telemetry.istio.io/v1/telemetries"
    otel = yaml.safe_load((OTELCOLLECTOR / "testdata" / "otel-tracing.yaml").read_text())
    otel["metadata"]["namespace"] = "default"  # as `kubectl apply -n default` sets it
    spec = dict(otelcollector_mesh(), defaultProviders={"tracing": ["test-otel"]})
    async with emulator.patch(f"{MESHCONFIGS}/default", json={"spec": spec},
                              headers={"Content-Type": "application/merge-patch+json"}) as response:
        assert response.status == 200, await response.text()
    await create(emulator, TELEMETRIES.format(namespace="default"), otel)
    await until(lambda: (condition(emulator, resource, "default", "otel-tracing", "Honoured") or {}).get("status")
                == "True")
    assert (condition(emulator, resource, "default", "otel-tracing", "Ready") or {}).get("status") == "True"

    with_metrics = telemetry("default", "with-metrics", {"randomSamplingPercentage": 5},
                             selector={"matchLabels": {"app": "reviews"}},
                             metrics=[{"providers": [{"name": "prometheus"}], "reportingInterval": "10s"}])
    await create(emulator, TELEMETRIES.format(namespace="default"), with_metrics)
    await until(lambda: condition(emulator, resource, "default", "with-metrics", "Honoured") is not None)
    honoured = condition(emulator, resource, "default", "with-metrics", "Honoured")
    assert honoured is not None
    assert (honoured["status"], honoured["reason"]) == ("False", "UnsupportedField")
    assert "spec.metrics[0].reportingInterval" in honoured["message"]
    assert (condition(emulator, resource, "default", "with-metrics", "Ready") or {}).get("status") == "True"
    await until(lambda: warned(emulator, "UnsupportedField"))
