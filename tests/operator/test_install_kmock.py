"""Acceptance: `tracemesh install -f samples/tracing.yaml` (the Zipkin task's IstioOperator, verbatim) against
kmock's API server, with the real operator running against the same kmock; and `tracemesh uninstall`.

kmock stores objects but runs no controllers: `KubeControllers` below plays the API server's CRD
controller (Established) and the Deployment controller (Available), as a cluster would.
The CLI is synchronous (the official `kubernetes` client): it runs in a thread, as in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from test_operator_kmock import Sidecar, create, obj, until

from tracemesh_cli.main import main
from tracemesh_operator.control_plane import ControlPlane
from tracemesh_operator.kmock_cluster import write_kubeconfig

ROOT = Path(__file__).resolve().parents[2]
TRACING = ROOT / "samples" / "tracing.yaml"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
DEPLOYMENTS = "/apis/apps/v1/namespaces/istio-system/deployments"
MESHCONFIG = ("tracemesh.io/v1alpha1/meshconfigs", "istio-system", "default")
OPERATOR = ("apps/v1/deployments", "istio-system", "tracemesh-operator")
# What a cluster serves besides what the operator watches (kmock_cluster.RESOURCES): the kinds of manifests/.
INSTALLED_KINDS: dict[str, dict[str, Any]] = {
    "apps/v1/deployments": {"kind": "Deployment", "namespaced": True, "subresources": {"status"}},
    "v1/serviceaccounts": {"kind": "ServiceAccount", "namespaced": True},
    "rbac.authorization.k8s.io/v1/clusterroles": {"kind": "ClusterRole", "namespaced": False},
    "rbac.authorization.k8s.io/v1/clusterrolebindings": {"kind": "ClusterRoleBinding", "namespaced": False},
}
VERBS = {"list", "watch", "get", "create", "patch", "delete"}


async def _mark_ready(emulator: kmock.KubernetesEmulator, collection: str, path_of: Any, condition: str) -> None:
    async with emulator.get(collection) as response:
        items = (await response.json()).get("items", []) if response.status == 200 else []
    for item in items:
        conditions = (item.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == condition and c.get("status") == "True" for c in conditions):
            status = {"conditions": [{"type": condition, "status": "True", "reason": "kmock"}]}
            async with emulator.patch(path_of(item), json={"status": status}) as response:
                assert response.status == 200, await response.text()


@contextlib.asynccontextmanager
async def kube_controllers(emulator: kmock.KubernetesEmulator) -> AsyncIterator[None]:
    async def loop() -> None:
        while True:
            await _mark_ready(emulator, CRDS, lambda crd: f"{CRDS}/{crd['metadata']['name']}", "Established")
            await _mark_ready(emulator, DEPLOYMENTS, lambda d: f"{DEPLOYMENTS}/{d['metadata']['name']}/status",
                              "Available")
            await asyncio.sleep(0.05)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def cluster(kmock: kmock.KubernetesEmulator, control_plane: ControlPlane,
                  tmp_path: Path) -> AsyncIterator[tuple[kmock.KubernetesEmulator, ControlPlane, Path]]:
    for key, info in INSTALLED_KINDS.items():
        kmock.resources[key] = kmock.ResourceInfo(verbs=VERBS, **info)
    kubeconfig = write_kubeconfig(tmp_path / "cli-kubeconfig", str(kmock.url))
    async with kube_controllers(kmock):
        yield kmock, control_plane, kubeconfig


async def tracemesh(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def stored(emulator: kmock.KubernetesEmulator, key: tuple[str, str | None, str]) -> dict[str, Any] | None:
    try:
        found = emulator.objects[key]
    except KeyError:
        return None
    return None if found.deleted else dict(found.raw)


def desired_state(emulator: kmock.KubernetesEmulator) -> dict[str, dict[str, Any]]:
    """Every object there is, without what controllers write (status) and the server keeps (metadata)."""
    return {str(key): {field: value for field, value in found.raw.items() if field not in ("status", "metadata")}
            for key, found in emulator.objects.items() if not found.deleted}


def writes(requests: list[Any], method: str) -> int:
    """Writes by the field manager `tracemesh` (its applies, and the creates kmock needs after them)."""
    return sum(1 for r in requests if r.method == method and r.params.get("fieldManager") == "tracemesh"
               and "/status" not in str(r.url.path))


def ready(body: dict[str, Any] | None) -> dict[str, Any]:
    conditions = ((body or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


async def test_install_the_zipkin_tasks_tracing_yaml_yields_a_ready_zipkin_provider(
        cluster: tuple[kmock.KubernetesEmulator, ControlPlane, Path], capsys: pytest.CaptureFixture[str]) -> None:
    emulator, control_plane, kubeconfig = cluster
    assert await tracemesh("install", "-f", str(TRACING), "--skip-confirmation", "--kubeconfig", str(kubeconfig),
                           "--readiness-timeout", "20s") == 0
    output = capsys.readouterr()
    assert "✔ Installation complete" in output.out and "not honoured" not in output.err

    meshconfig = stored(emulator, MESHCONFIG)
    assert meshconfig is not None
    assert meshconfig["spec"] == yaml.safe_load(TRACING.read_text())["spec"]["meshConfig"]
    assert ready(meshconfig)["status"] == "True", ready(meshconfig)
    assert stored(emulator, OPERATOR) is not None
    assert stored(emulator, ("apiextensions.k8s.io/v1/customresourcedefinitions", None,
                             "telemetries.telemetry.istio.io")) is not None

    # Every write was a server-side apply by the field manager `tracemesh` (kmock then created what was missing).
    applies = [r for r in emulator if r.method == "PATCH" and r.params.get("fieldManager") == "tracemesh"]
    assert applies and all(r.headers.get("Content-Type") == "application/apply-patch+yaml" for r in applies)
    assert all(r.params.get("force") == "true" for r in applies)

    # The zipkin provider is in force: the task's next step, its Telemetry, reaches a sidecar with it.
    await create(emulator, "/api/v1/namespaces", obj("v1", "Namespace", "default",
                                                     metadata={"labels": {"istio-injection": "enabled"}}))
    await create(emulator, "/api/v1/namespaces/default/pods", obj(
        "v1", "Pod", "productpage-v1-1", "default",
        metadata={"labels": {"app": "productpage"},
                  "annotations": {"sidecar.istio.io/status": '{"containers":["istio-proxy"]}'}},
        spec={"containers": [{"name": "productpage", "ports": [{"containerPort": 9080}]}]},
        status={"podIP": "10.244.0.12"}))
    await create(emulator, "/apis/telemetry.istio.io/v1/namespaces/istio-system/telemetries", obj(
        "telemetry.istio.io/v1", "Telemetry", "mesh-default", "istio-system",
        spec={"tracing": [{"providers": [{"name": "zipkin"}]}]}))
    assert control_plane.discovery_port is not None
    sidecar = Sidecar(control_plane.discovery_port, "default", "productpage-v1-1")
    try:
        await until(lambda: bool(sidecar.configs and sidecar.configs[-1].providers), timeout_s=5.0)
        provider = sidecar.configs[-1].providers[0]
        assert (provider.name, provider.url) == ("zipkin", "http://zipkin.istio-system.svc.cluster.local:9411/api/v2/spans")
    finally:
        await sidecar.close()


async def test_install_is_idempotent_and_set_flags_change_the_meshconfig(
        cluster: tuple[kmock.KubernetesEmulator, ControlPlane, Path]) -> None:
    emulator, _, kubeconfig = cluster
    common = ("-f", str(TRACING), "-y", "--kubeconfig", str(kubeconfig), "--readiness-timeout", "20s")
    assert await tracemesh("install", *common) == 0
    first, seen = desired_state(emulator), len(list(emulator))
    # The running operator made istiod's GatewayClass `istio`; everything else is the install's.
    installed = [key for key in first if "gatewayclasses" not in key]
    # kmock answers an apply to a missing object 404 (a real API server creates it): each was then created.
    assert writes(list(emulator), "POST") == writes(list(emulator), "PATCH") == len(installed)
    assert await tracemesh("install", *common) == 0
    assert desired_state(emulator) == first
    again = list(emulator)[seen:]
    assert writes(again, "POST") == 0 and writes(again, "PATCH") == len(installed)  # applied, nothing created

    assert await tracemesh("install", *common, "--set", "meshConfig.extensionProviders[0].zipkin.port=9412",
                           "--set", "meshConfig.defaultProviders.tracing[0]=zipkin") == 0
    spec = stored(emulator, MESHCONFIG)["spec"]  # type: ignore[index]
    assert spec["extensionProviders"][0]["zipkin"]["port"] == 9412
    assert spec["defaultProviders"] == {"tracing": ["zipkin"]}


async def test_a_meshconfig_the_operator_rejects_fails_the_install_with_its_reason(
        cluster: tuple[kmock.KubernetesEmulator, ControlPlane, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, _, kubeconfig = cluster
    assert await tracemesh("install", "-f", str(TRACING), "-y", "--kubeconfig", str(kubeconfig),
                           "--readiness-timeout", "20s", "--set", "meshConfig.defaultProviders.tracing[0]=zipkn") == 1
    assert "UnknownProvider" in capsys.readouterr().err


async def test_uninstall_keeps_the_crds_and_purge_removes_them(
        cluster: tuple[kmock.KubernetesEmulator, ControlPlane, Path], capsys: pytest.CaptureFixture[str]) -> None:
    emulator, _, kubeconfig = cluster
    crd = ("apiextensions.k8s.io/v1/customresourcedefinitions", None, "meshconfigs.tracemesh.io")
    assert await tracemesh("install", "-f", str(TRACING), "-y", "--kubeconfig", str(kubeconfig)) == 0
    assert await tracemesh("uninstall", "-y", "--kubeconfig", str(kubeconfig)) == 0
    assert stored(emulator, OPERATOR) is None and stored(emulator, MESHCONFIG) is None
    assert stored(emulator, crd) is not None
    assert stored(emulator, ("v1/namespaces", None, "istio-system")) is not None
    assert await tracemesh("uninstall", "--purge", "-y", "--kubeconfig", str(kubeconfig)) == 0
    assert stored(emulator, crd) is None
    assert "- not there: Deployment istio-system/tracemesh-operator" in capsys.readouterr().out
