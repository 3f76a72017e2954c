"""The operator's memory at 1000 injected pods in 100 namespaces (target < 150 MB RSS).

`tracemesh operator` runs as its own process, logged in to kmock's Kubernetes emulator (in
this process) through a kubeconfig, with the real kopf handlers. The emulator holds 100
namespaces, the default MeshConfig, 1000 pod bodies shaped like injected Bookinfo pods, and a
Service with its EndpointSlice per app and namespace (500), which every pod's config carries as
its service registry.
Once every pod's config has reached its subscriber on the discovery port (a long poll per
pod, as from 1000 sidecars), the operator's RSS is read from /proc. Then a mesh-wide
Telemetry is applied, which recompiles all 1000 pods, and the RSS and the peak (VmHWM) are
read again.

    python -m bench.operator_memory [--pods 1000] [--namespaces 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import yaml

from bench.processes import free_port, settled
from tracemesh_operator.kmock_cluster import operator_ready, write_kubeconfig

REPO = Path(__file__).resolve().parents[1]
TARGET_MB = 150.0
TIMEOUT_S = 120.0
SERVICES = ("productpage", "details", "reviews", "ratings", "mongodb")


def injected_pod(namespace: str, index: int) -> dict[str, Any]:
    """A pod body of realistic size (~3 KB): the app container, the injected proxy, owner, status."""
    app = SERVICES[index % len(SERVICES)]
    name = f"{app}-v1-7d9c8b6f5-{index:05d}"
    env = [{"name": n, "valueFrom": {"fieldRef": {"fieldPath": p}}} for n, p in (
        ("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"), ("INSTANCE_IP", "status.podIP"),
        ("SERVICE_ACCOUNT", "spec.serviceAccountName"))]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": namespace, "uid": f"00000000-0000-0000-0000-{index:012d}",
            "creationTimestamp": "2026-01-01T00:00:00Z", "resourceVersion": str(1000 + index),
            "labels": {"app": app, "version": "v1", "pod-template-hash": "7d9c8b6f5",
                       "security.istio.io/tlsMode": "istio", "service.istio.io/canonical-name": app},
            "annotations": {"sidecar.istio.io/status": '{"initContainers":["istio-init"],'
                                                       '"containers":["istio-proxy"]}',
                            "kubectl.kubernetes.io/default-container": app},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{app}-v1-7d9c8b6f5",
                                 "uid": "11111111-0000-0000-0000-000000000000", "controller": True}],
        },
        "spec": {
            "serviceAccountName": f"bookinfo-{app}",
            "initContainers": [{"name": "istio-init", "image": "tracemesh/proxy:0.1.0",
                                "args": ["iptables", "--inbound-ports", "*", "--proxy-uid", "1337"],
                                "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}}}],
            "containers": [
                {"name": app, "image": f"docker.io/istio/examples-bookinfo-{app}-v1:1.20.2",
                 "ports": [{"containerPort": 9080, "protocol": "TCP"}],
                 "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}},
                {"name": "istio-proxy", "image": "tracemesh/proxy:0.1.0", "args": ["proxy"], "env": env,
                 "ports": [{"containerPort": 15090, "name": "http-envoy-prom"}, {"containerPort": 15021}],
                 "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}},
                 "securityContext": {"runAsUser": 1337, "readOnlyRootFilesystem": True}},
            ],
        },
        "status": {"phase": "Running", "podIP": f"10.{index // 65536}.{index // 256 % 256}.{index % 256}",
                   "conditions": [{"type": t, "status": "True"} for t in
                                  ("Initialized", "Ready", "ContainersReady", "PodScheduled")]},
    }


def service_objects(namespace: str, app: str, cluster_ip: str,
                    ips: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Bookinfo-shaped Service and its EndpointSlice, as the API server serves them."""
    metadata = {"name": app, "namespace": namespace, "uid": f"svc-{namespace}-{app}",
                "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"app": app, "service": app}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": metadata,
               "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                        "ipFamilies": ["IPv4"], "selector": {"app": app}, "sessionAffinity": "None",
                        "ports": [{"name": "http", "port": 9080, "targetPort": 9080, "protocol": "TCP"}]}}
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": f"{app}-abcde", "namespace": namespace, "uid": f"eps-{namespace}-{app}",
                     "creationTimestamp": "2026-01-01T00:00:00Z",
                     "labels": {"kubernetes.io/service-name": app, "endpointslice.kubernetes.io/managed-by":
                                "endpointslice-controller.k8s.io"}},
        "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True, "serving": True, "terminating": False},
                       "nodeName": "kind-worker", "targetRef": {"kind": "Pod", "namespace": namespace}}
                      for ip in ips],
    }
    return service, endpoint_slice


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of the process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def _all_served(session: aiohttp.ClientSession, port: int, pods: list[tuple[str, str]],
                      versions: dict[tuple[str, str], str], deadline: float) -> None:
    """Until every pod's served config differs from its version in `versions` (updated in place).

    One long poll per pod, all at once: 1000 subscribed sidecars, as the operator meets them in a cluster.
    """
    async def subscribe(pod: tuple[str, str]) -> None:
        url = f"http://127.0.0.1:{port}/v1/proxy-config/{pod[0]}/{pod[1]}"
        while (remaining := deadline - time.monotonic()) > 0:
            params = {"version": versions.get(pod, ""), "wait": f"{remaining:.0f}s"}
            async with session.get(url, params=params) as reply:
                if reply.status == 200:
                    await reply.read()  # a sidecar reads its whole config (not parsed here: not the operator's cost)
                    versions[pod] = reply.headers["X-Tracemesh-Version"]
                    return
        raise TimeoutError(f"{pod[0]}/{pod[1]} got no new config within {TIMEOUT_S:.0f}s")

    await asyncio.gather(*(subscribe(pod) for pod in pods))


async def run(pods: int, namespaces: int) -> int:
    work = Path(tempfile.mkdtemp(prefix="tracemesh-bench-"))
    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator):
        with operator_ready(emulator):
            return await _measure(emulator, pods, namespaces, work)


async def _measure(emulator: kmock.KubernetesEmulator, pod_count: int, namespace_count: int, work: Path) -> int:
    namespaces = [f"bench-{i:03d}" for i in range(namespace_count)]
    for namespace in ["istio-system", *namespaces]:
        emulator.objects["v1/namespaces", None, namespace] = {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace,
                                                                  "labels": {"istio-injection": "enabled"}}}
    meshconfig = yaml.safe_load((REPO / "manifests" / "meshconfig-default.yaml").read_text())
    emulator.objects["tracemesh.io/v1alpha1/meshconfigs", "istio-system", "default"] = meshconfig
    pods = []
    bodies = []
    for index in range(pod_count):
        namespace = namespaces[index % namespace_count]
        body = injected_pod(namespace, index)
        bodies.append(body)
        emulator.objects["v1/pods", namespace, body["metadata"]["name"]] = body
        pods.append((namespace, body["metadata"]["name"]))
    for index, (namespace, app) in enumerate((ns, app) for ns in namespaces for app in SERVICES):
        ips = [pod["status"]["podIP"] for (pod_ns, _), pod in zip(pods, bodies, strict=True)
               if pod_ns == namespace and pod["metadata"]["labels"]["app"] == app]
        service, endpoint_slice = service_objects(namespace, app, f"10.96.{index // 256}.{index % 256}", ips)
        emulator.objects["v1/services", namespace, app] = service
        emulator.objects["discovery.k8s.io/v1/endpointslices", namespace, f"{app}-abcde"] = endpoint_slice

    port = free_port()
    env = dict(os.environ, KUBECONFIG=str(write_kubeconfig(work / "kubeconfig", str(emulator.url))))
    command = [sys.executable, "-m", "tracemesh_cli.main", "operator", "--no-webhook", "--host", "127.0.0.1",
               "--discovery-port", str(port), "--liveness", ""]
    log_path = work / "operator.log"
    with log_path.open("wb") as log:
        operator = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        started = time.monotonic()
        deadline = started + TIMEOUT_S
        versions: dict[tuple[str, str], str] = {}
        connector = aiohttp.TCPConnector(limit=0)  # one connection per subscribed pod
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S + 10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            while True:  # until the discovery port answers (bounded by the deadline)
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz"):
                        break
                except aiohttp.ClientError:
                    if time.monotonic() > deadline or operator.poll() is not None:
                        raise RuntimeError(f"the operator did not start; see {log_path}") from None
                    await asyncio.sleep(0.1)
            await _all_served(session, port, pods, versions, deadline)
            loaded = time.monotonic() - started
            # kmock replays every object when a watch starts, so kopf sees each twice: let that pass.
            await settled(operator.pid, deadline)
            rss, _ = memory_mb(operator.pid)

            seed = yaml.safe_load((REPO / "samples" / "bookinfo" / "telemetry.yaml").read_text())
            changed = time.monotonic()
            async with emulator.post("/apis/telemetry.istio.io/v1/namespaces/istio-system/telemetries",
                                     json=seed) as reply:
                reply.raise_for_status()
            await _all_served(session, port, pods, versions, time.monotonic() + TIMEOUT_S)
            recompiled = time.monotonic() - changed
            rss_after, peak = memory_mb(operator.pid)
    finally:
        operator.send_signal(signal.SIGINT)
        try:
            operator.wait(15)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait()

    print(f"operator memory: {pod_count} injected pods in {namespace_count} namespaces (kmock, real kopf handlers)")
    print(f"  start-up until all {pod_count} subscribers hold a config: {loaded:6.2f} s")
    print(f"  RSS with every config compiled and subscribed:   {rss:6.1f} MB")
    print(f"  mesh-wide Telemetry until all hold the new one:  {recompiled:6.2f} s")
    print(f"  RSS after that recompile:                        {rss_after:6.1f} MB  (peak {peak:.1f} MB)")
    verdict = "OK" if peak < TARGET_MB else "OVER"
    print(f"  target < {TARGET_MB:.0f} MB: {verdict}")
    return 0 if peak < TARGET_MB else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.operator_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=100)
    args = parser.parse_args(argv)
    return asyncio.run(run(args.pods, args.namespaces))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
