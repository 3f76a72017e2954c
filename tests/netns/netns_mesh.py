"""A whole mesh in network namespaces: control plane, collector, injected workloads.

    istio-system   tracemesh-discovery  (the operator's MeshState + ConfigHub, port 15010)
                   zipkin               (`tracemesh collector`: Services zipkin:9411,
                                         jaeger-collector:4318, tracing:16686)
    <workloads>    pods injected by the real webhook mutation, config pushed by the operator code

Tests add workloads and Services, call start(), then drive traffic and read traces back
through a port-forward to the collector, as a user would with `tracemesh dashboard`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from netns_cluster import Cluster
from netns_control import ControlPlane
from netns_net import PortForward
from netns_pods import Kubelet, RunningPod, injected, pod_from_template

REPO = Path(__file__).resolve().parents[2]
SYSTEM = "istio-system"
DISCOVERY_ADDRESS = "tracemesh-discovery.istio-system.svc:15010"
COLLECTOR_PORTS = {"zipkin": 9411, "jaeger-collector": 4318, "tracing": 16686}


def load_yaml(relative: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / relative).read_text())
    return document


def collector_pod(extra_args: Sequence[str] = ()) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "zipkin-netns", "namespace": SYSTEM, "labels": {"app": "zipkin"}},
            "spec": {"containers": [{
                "name": "collector", "image": "tracemesh/proxy:0.1.0",
                "command": ["tracemesh", "collector", "--host", "0.0.0.0", *extra_args],
                "ports": [{"containerPort": port} for port in sorted(set(COLLECTOR_PORTS.values()))],
                "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
            }]}}


class Mesh:
    def __init__(self, cluster: Cluster, kubelet: Kubelet, mesh_spec: Mapping[str, Any],
                 collector_args: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> None:
        self.cluster = cluster
        self.kubelet = kubelet
        self.control = ControlPlane(mesh_spec, DISCOVERY_ADDRESS, environ)
        self.namespace_labels: dict[str, dict[str, str]] = {"default": {"istio-injection": "enabled"}}
        self.discovery = cluster.add_pod("tracemesh-discovery-netns", SYSTEM, {"app": "tracemesh-discovery"})
        cluster.add_service("tracemesh-discovery", SYSTEM, [(15010, 15010)], {"app": "tracemesh-discovery"})
        self.collector = kubelet.prepare(collector_pod(collector_args))
        for name, port in COLLECTOR_PORTS.items():
            cluster.add_service(name, SYSTEM, [(port, port)], {"app": "zipkin"})
        self.workloads: list[RunningPod] = []

    def add_workload(self, pod: Mapping[str, Any], inject: bool = True) -> RunningPod:
        """Admission (the webhook's patch; `inject=False`: a pod the webhook leaves alone, a gateway) and
        scheduling (a netns and an IP); nothing runs yet."""
        namespace = pod["metadata"]["namespace"]
        running = self.kubelet.prepare(injected(pod, self.namespace_labels.get(namespace, {})) if inject else pod)
        self.workloads.append(running)
        return running

    def add_service(self, name: str, namespace: str, ports: Sequence[tuple[int, int]],
                    selector: Mapping[str, str], port_names: Mapping[int, str] | None = None) -> None:
        self.cluster.add_service(name, namespace, ports, selector, port_names)

    def add_objects(self, objects: Sequence[Mapping[str, Any]], namespace: str | None = None) -> list[RunningPod]:
        """`kubectl apply` of manifests: each Deployment's pod (admitted and scheduled, not started; injected
        unless its template says `sidecar.istio.io/inject: "false"`) and each Service; `namespace` for objects
        that name none."""
        pods = []
        for document in objects:
            name = document["metadata"]["name"]
            where = document["metadata"].get("namespace") or namespace or "default"
            if document["kind"] == "Deployment":
                template = document["spec"]["template"]
                inject = (template["metadata"].get("labels") or {}).get("sidecar.istio.io/inject") != "false"
                # Named as a ReplicaSet names its pods, `<replicaset>-<suffix>` (the ReplicaSet: `<name>-netns`).
                pods.append(self.add_workload(pod_from_template(template, f"{name}-netns-0", where, owner=name),
                                              inject=inject))
            elif document["kind"] == "Service":
                ports = [(port["port"], port.get("targetPort", port["port"])) for port in document["spec"]["ports"]]
                self.add_service(name, where, ports, document["spec"]["selector"])
        return pods

    async def start(self) -> None:
        self.cluster.sync()
        for service in self.cluster.services:
            self.control.service_synced(*service.api_objects())
        await self.control.serve(self.discovery.netns)
        for pod in self.workloads:
            self.control.pod_added(pod.body)
        await self.kubelet.start(self.collector)
        await asyncio.gather(*(self.kubelet.start(pod) for pod in self.workloads))

    async def wait_synced(self, timeout_s: float = 5.0) -> float:
        """Seconds until every workload's sidecar says it runs the config the operator last pushed to it."""
        started = time.monotonic()
        wanted = {pod.key: self.control.hub.get(pod.key) for pod in self.workloads}
        while True:
            rows = {row.pod_key: row for row in self.control.hub.connected()}
            if all(key in rows and config is not None and rows[key].version_in_force == config.version
                   for key, config in wanted.items()):
                return time.monotonic() - started
            assert time.monotonic() - started < timeout_s, f"sidecars not synced within {timeout_s}s: {rows}"
            await asyncio.sleep(0.02)

    def forward(self, service: str, namespace: str = SYSTEM) -> PortForward:
        """`kubectl port-forward svc/<service>`: from the node, through the Service's ClusterIP."""
        target = self.cluster.service(service, namespace)
        return PortForward(self.cluster.node, target.cluster_ip, target.ports[0].port)

    async def close(self) -> None:
        await self.control.close()


async def zipkin_traces(session: aiohttp.ClientSession, base_url: str, service: str,
                        limit: int = 1000) -> list[list[dict[str, Any]]]:
    async with session.get(f"{base_url}/api/v2/traces", params={"serviceName": service, "limit": str(limit),
                                                                 "lookback": str(3600_000)}) as response:
        assert response.status == 200, await response.text()
        traces: list[list[dict[str, Any]]] = await response.json()
        return traces


async def wait_for_traces(session: aiohttp.ClientSession, base_url: str, service: str, count: int,
                          spans_each: Sequence[int], timeout_s: float = 15.0) -> list[list[dict[str, Any]]]:
    """At least `count` traces whose span counts are all in `spans_each` (spans arrive in batches)."""
    deadline = time.monotonic() + timeout_s
    while True:
        traces = await zipkin_traces(session, base_url, service)
        complete = [trace for trace in traces if len(trace) in spans_each]
        if len(complete) >= count and len(complete) == len(traces):
            return traces
        if time.monotonic() > deadline:
            sizes = sorted(len(trace) for trace in traces)
            raise AssertionError(f"{service}: wanted {count} traces of {list(spans_each)} spans within "
                                 f"{timeout_s}s, have {len(traces)} with sizes {sizes}")
        await asyncio.sleep(0.3)
