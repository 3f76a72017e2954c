"""Acceptance: the real operator (kopf, unmodified handlers) against kmock's Kubernetes emulator.

Sidecars are real subscriptions: the sidecar's own DiscoveryClient long-polling the operator's
config push server. Every wait is bounded; the seed Telemetry must take effect within 1 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
import yaml
from service_objects import endpoint_slice, service

from tracemesh_operator.control_plane import ControlPlane
from tracemesh_sidecar.config import ProxyConfig
from tracemesh_sidecar.discovery.client import DiscoveryClient
from tracemesh_sidecar.stats import Stats

SEED = Path(__file__).resolve().parents[2] / "samples" / "bookinfo" / "telemetry.yaml"
MESHCONFIG = Path(__file__).resolve().parents[2] / "manifests" / "meshconfig-default.yaml"
TELEMETRIES = "/apis/telemetry.istio.io/v1/namespaces/{namespace}/telemetries"
INJECTED = {"sidecar.istio.io/status": '{"containers":["istio-proxy"]}'}


class Sidecar:
    """A subscribed sidecar: the real discovery client, recording each config it is given."""

    def __init__(self, port: int, namespace: str, name: str) -> None:
        self.configs: list[ProxyConfig] = []
        self._changed = asyncio.Event()
        self._client = DiscoveryClient(f"127.0.0.1:{port}", namespace, name, self._apply, Stats(), wait_s=5.0)
        self._task = asyncio.create_task(self._client.run())

    def _apply(self, config: ProxyConfig) -> None:
        self.configs.append(config)
        self._changed.set()

    @property
    def sampling(self) -> float | None:
        if not self.configs:
            return None
        tracing = self.configs[-1].tracing
        assert tracing.client.sampling_percentage == tracing.server.sampling_percentage
        return tracing.client.sampling_percentage

    async def holds(self, sampling: float, timeout_s: float = 1.0) -> float:
        """Seconds until this sidecar runs a config with `sampling`; fails after `timeout_s`."""
        start = time.monotonic()
        while self.sampling != sampling:
            remaining = timeout_s - (time.monotonic() - start)
            if remaining <= 0:
                pytest.fail(f"sidecar holds sampling {self.sampling}, not {sampling}, after {timeout_s}s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return time.monotonic() - start

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def obj(api_version: str, kind: str, name: str, namespace: str | None = None, **fields: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "creationTimestamp": fields.pop("created", "2026-01-01T00:00:00Z")}
    if namespace:
        metadata["namespace"] = namespace
    metadata.update(fields.pop("metadata", {}))
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **fields}


def telemetry(namespace: str, name: str, rule: dict[str, Any], created: str = "2026-01-02T00:00:00Z",
              **spec: Any) -> dict[str, Any]:
    return obj("telemetry.istio.io/v1", "Telemetry", name, namespace, created=created,
               spec=dict(spec, tracing=[rule]))


async def create(emulator: kmock.KubernetesEmulator, path: str, body: dict[str, Any]) -> None:
    async with emulator.post(path, json=body) as response:
        assert response.status == 200, await response.text()


async def delete(emulator: kmock.KubernetesEmulator, path: str) -> None:
    async with emulator.delete(path) as response:
        assert response.status == 200, await response.text()


async def until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not true after {timeout_s}s")
        await asyncio.sleep(0.01)


def ready(emulator: kmock.KubernetesEmulator, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        body = emulator.objects["telemetry.istio.io/v1/telemetries", namespace, name].raw
    except KeyError:
        return None
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), None)


@pytest.fixture
async def mesh(kmock: kmock.KubernetesEmulator,
               control_plane: ControlPlane) -> tuple[kmock.KubernetesEmulator, ControlPlane]:
    """Namespaces, the default MeshConfig and two injected pods; the operator running."""
    for name in ("istio-system", "default", "other"):
        await create(kmock, "/api/v1/namespaces", obj("v1", "Namespace", name,
                                                      metadata={"labels": {"istio-injection": "enabled"}}))
    meshconfig = yaml.safe_load(MESHCONFIG.read_text())
    await create(kmock, "/apis/tracemesh.io/v1alpha1/namespaces/istio-system/meshconfigs", meshconfig)
    for namespace, name, app in (("default", "reviews-v1-abc", "reviews"), ("other", "web-1", "web")):
        await create(kmock, f"/api/v1/namespaces/{namespace}/pods", obj(
            "v1", "Pod", name, namespace, metadata={"labels": {"app": app}, "annotations": INJECTED},
            spec={"containers": [{"name": app, "ports": [{"containerPort": 9080}]}]},
            status={"podIP": "10.244.0.9"}))
    return kmock, control_plane


@pytest.fixture
async def sidecars(mesh: tuple[kmock.KubernetesEmulator, ControlPlane]) -> AsyncIterator[tuple[Sidecar, Sidecar]]:
    _, control_plane = mesh
    assert control_plane.discovery_port is not None
    reviews = Sidecar(control_plane.discovery_port, "default", "reviews-v1-abc")
    web = Sidecar(control_plane.discovery_port, "other", "web-1")
    try:
        # Before any Telemetry: the MeshConfig's default, Istio's 1%.
        await reviews.holds(1.0, timeout_s=5.0)
        await web.holds(1.0, timeout_s=5.0)
        yield reviews, web
    finally:
        await reviews.close()
        await web.close()


async def test_telemetry_hierarchy_reaches_subscribed_sidecars(
        mesh: tuple[kmock.KubernetesEmulator, ControlPlane], sidecars: tuple[Sidecar, Sidecar]) -> None:
    emulator, _ = mesh
    reviews, web = sidecars
    assert reviews.configs[-1].providers[0].url == "http://zipkin.istio-system.svc.cluster.local:9411/api/v2/spans"

    # The seed's Telemetry, exactly as written: 100% everywhere, within a second.
    seed = yaml.safe_load(SEED.read_text())
    await create(emulator, TELEMETRIES.format(namespace="istio-system"), seed)
    elapsed = max(await reviews.holds(100.0), await web.holds(100.0))
    assert elapsed < 1.0
    await until(lambda: (ready(emulator, "istio-system", "mesh-default") or {}).get("status") == "True")

    # A namespace-level Telemetry overrides it for that namespace only.
    web_version = web.configs[-1].version
    await create(emulator, TELEMETRIES.format(namespace="default"),
                 telemetry("default", "namespace-wide", {"randomSamplingPercentage": 50}))
    assert await reviews.holds(50.0) < 1.0
    # A workload selector overrides that.
    await create(emulator, TELEMETRIES.format(namespace="default"), telemetry(
        "default", "reviews-only", {"randomSamplingPercentage": 10}, selector={"matchLabels": {"app": "reviews"}}))
    assert await reviews.holds(10.0) < 1.0

    # Deleting each restores its parent.
    await delete(emulator, TELEMETRIES.format(namespace="default") + "/reviews-only")
    assert await reviews.holds(50.0) < 1.0
    await delete(emulator, TELEMETRIES.format(namespace="default") + "/namespace-wide")
    assert await reviews.holds(100.0) < 1.0
    # The other namespace never saw any of it: not one new version.
    assert web.configs[-1].version == web_version and web.sampling == 100.0
    await delete(emulator, TELEMETRIES.format(namespace="istio-system") + "/mesh-default")
    await reviews.holds(1.0)
    await web.holds(1.0)


REJECTIONS = [
    ("unknown provider",
     [telemetry("default", "bad", {"providers": [{"name": "jaegr"}], "randomSamplingPercentage": 5})],
     "bad", "UnknownProvider", "'jaegr'"),
    ("two selector-less in one namespace", [
        telemetry("default", "first", {"randomSamplingPercentage": 50}, created="2026-01-02T00:00:00Z"),
        telemetry("default", "second", {"randomSamplingPercentage": 70}, created="2026-01-03T00:00:00Z")],
     "second", "ConflictingTelemetry", "Telemetry default/first"),
]


@pytest.mark.parametrize(("telemetries", "rejected", "reason", "words"), [c[1:] for c in REJECTIONS],
                         ids=[c[0] for c in REJECTIONS])
async def test_an_invalid_telemetry_gets_ready_false_and_changes_nothing(
        mesh: tuple[kmock.KubernetesEmulator, ControlPlane], sidecars: tuple[Sidecar, Sidecar],
        telemetries: list[dict[str, Any]], rejected: str, reason: str, words: str) -> None:
    emulator, _ = mesh
    reviews, _ = sidecars
    for body in telemetries[:-1]:
        await create(emulator, TELEMETRIES.format(namespace="default"), body)
    expected = reviews.sampling if len(telemetries) == 1 else 50.0
    assert expected is not None
    await reviews.holds(expected)
    configs_before = len(reviews.configs)

    await create(emulator, TELEMETRIES.format(namespace="default"), telemetries[-1])
    await until(lambda: ready(emulator, "default", rejected) is not None)
    condition = ready(emulator, "default", rejected)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", reason)
    assert words in condition["message"]
    # A Warning Event names the problem too (kubectl describe telemetry).
    await until(lambda: any(r.method == "POST" and r.url.path.endswith("/events")
                            and r.data.get("reason") == reason and r.data.get("type") == "Warning"
                            for r in emulator))
    # Nothing changed for the sidecar: no new config, same sampling.
    await asyncio.sleep(0.2)
    assert len(reviews.configs) == configs_before and reviews.sampling == expected


def admission_review(namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "reviews-v1-", "namespace": namespace, "labels": labels},
           "spec": {"containers": [{"name": "reviews", "image": "reviews:1", "ports": [{"containerPort": 9080}]}]}}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "8c8e1b9c-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "namespace": namespace, "operation": "CREATE", "object": pod}}


async def test_the_webhook_decides_by_the_namespace_labels_the_operator_watches(
        mesh: tuple[kmock.KubernetesEmulator, ControlPlane]) -> None:
    _, control_plane = mesh
    ca_pem = control_plane.memo.ca_pem
    assert ca_pem is not None and control_plane.webhook_port is not None
    url = f"https://127.0.0.1:{control_plane.webhook_port}/inject"
    # The API server verifies the webhook against the caBundle: so does this client.
    context = ssl.create_default_context(cadata=ca_pem.decode())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def review(namespace: str, labels: dict[str, str]) -> dict[str, Any]:
            async with session.post(url, json=admission_review(namespace, labels), ssl=context) as reply:
                assert reply.status == 200
                answer: dict[str, Any] = (await reply.json())["response"]
                return answer

        await until(lambda: control_plane.memo.get("namespaces") is not None
                    and bool(control_plane.memo.namespaces.get("default")))
        injected = await review("default", {"app": "reviews"})
        assert injected["allowed"] and injected["patchType"] == "JSONPatch"
        opted_out = await review("default", {"app": "reviews", "sidecar.istio.io/inject": "false"})
        assert opted_out["allowed"] and "patch" not in opted_out
        unknown = await review("not-yet-seen", {"app": "reviews"})
        assert not unknown["allowed"] and "not known to the operator yet" in unknown["status"]["message"]


SERVICES = "/api/v1/namespaces/default/services"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"


async def test_services_and_endpoint_slices_become_every_sidecars_service_registry(
        mesh: tuple[kmock.KubernetesEmulator, ControlPlane], sidecars: tuple[Sidecar, Sidecar]) -> None:
    emulator, _ = mesh
    reviews, web = sidecars
    http = [{"name": "http", "port": 9080, "protocol": "TCP"}]

    def endpoints(sidecar: Sidecar) -> tuple[str, ...] | None:
        entries = [e for e in sidecar.configs[-1].outbound.services if e.host == "ratings.default.svc.cluster.local"]
        return entries[0].endpoints if entries else None

    await create(emulator, SERVICES, service("default", "ratings", "10.96.0.20",
                                             [{"name": "http", "port": 9080, "targetPort": 9080}]))
    await create(emulator, SLICES, endpoint_slice("default", "ratings", "ratings-abcde", http, ready=["10.244.0.5"]))
    # Every sidecar, in any namespace, as istiod pushes every Service to every sidecar by default.
    await until(lambda: endpoints(reviews) == endpoints(web) == ("10.244.0.5:9080",))
    (entry,) = [e for e in web.configs[-1].outbound.services if e.host.startswith("ratings.")]
    assert (entry.port, entry.addresses) == (9080, ("10.96.0.20",))

    # Scaled to two ready replicas (and one starting, not ready yet).
    async with emulator.patch(f"{SLICES}/ratings-abcde", json={"endpoints": [
            {"addresses": ["10.244.0.5"], "conditions": {"ready": True}},
            {"addresses": ["10.244.0.6"], "conditions": {"ready": True}},
            {"addresses": ["10.244.0.7"], "conditions": {"ready": False}}]}) as response:
        assert response.status == 200, await response.text()
    await until(lambda: endpoints(reviews) == endpoints(web) == ("10.244.0.5:9080", "10.244.0.6:9080"))

    await delete(emulator, f"{SLICES}/ratings-abcde")
    await until(lambda: endpoints(reviews) == ())
    await delete(emulator, f"{SERVICES}/ratings")
    await until(lambda: endpoints(reviews) is None and endpoints(web) is None)
