"""Bookinfo through the ingress gateway, in netns pods: `$GATEWAY_URL` as in Istio's tasks.

The gateway is a pod of manifests/ingressgateway.yaml's Deployment (`tracemesh proxy router`, not
injected), behind its Service (80 -> 8080); its routes are the operator's, pushed on 15010, compiled
from Bookinfo's gateway files applied verbatim: Istio's API (samples/bookinfo/networking/
bookinfo-gateway.yaml), then the Gateway API (samples/bookinfo/gateway-api/bookinfo-gateway.yaml,
whose Gateway gets its own `bookinfo-gateway-istio` Deployment and Service, written by the
operator's code as istiod's deployment controller writes them). Traces are read back through the
Zipkin and the Jaeger APIs and checked for Istio's ingress shape (tracing.go WantOtelIngressTraceRoot).
Then virtual-service-all-v1.yaml with destination-rule-all.yaml routes every request to reviews v1,
in the callers' sidecars.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import yaml
from bookinfo_e2e import (
    Checked,
    check_every_reviews_version,
    check_traces,
    now_us,
    send_requests,
    wait_for_complete_traces,
)
from netns_cluster import Cluster
from netns_mesh import DISCOVERY_ADDRESS, REPO, Mesh, load_yaml
from netns_pods import Kubelet, http_status

from tracemesh_operator.gateway_api_objects import gateway_workload

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]

INGRESS = "istio-ingressgateway.istio-system"
GATEWAY_API_WORKLOAD = "bookinfo-gateway-istio.default"
REQUESTS = 12
CANONICAL_NAME = "service.istio.io/canonical-name"


def documents(relative: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((REPO / relative).read_text()) if doc]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(cluster: Cluster, kubelet: Kubelet) -> AsyncIterator[Mesh]:
    built = Mesh(cluster, kubelet, load_yaml("samples/bookinfo/meshconfig.yaml")["spec"])
    built.control.apply_telemetry(load_yaml("samples/bookinfo/telemetry.yaml"))
    built.add_objects(documents("samples/bookinfo/platform/kube/bookinfo.yaml"))
    built.add_objects(documents("manifests/ingressgateway.yaml"))
    try:
        await built.start()
        yield built
    finally:
        await built.close()


def pod_ips(mesh: Mesh) -> dict[str, set[str]]:
    """Canonical service -> its pods' IPs (the gateways' canonical name is their label's, not `app`)."""
    ips: dict[str, set[str]] = {}
    for pod in mesh.workloads:
        labels = pod.net.labels
        ips.setdefault(labels.get(CANONICAL_NAME) or labels["app"], set()).add(pod.net.ip)
    return ips


async def gateway_get(mesh: Mesh, service: str, namespace: str, path: str) -> int:
    """GET through the gateway Service's port 80 from the node: `curl http://$GATEWAY_URL/...`."""
    address = mesh.cluster.service(service, namespace).cluster_ip
    return await http_status(mesh.cluster.node, address, 80, path, timeout_s=10.0)


async def wait_routed(mesh: Mesh, service: str, namespace: str, timeout_s: float = 20.0) -> None:
    """Until the gateway answers /productpage with 200: its pushed routes are in force."""
    deadline = time.monotonic() + timeout_s
    status = 0
    while time.monotonic() < deadline:
        try:
            status = await gateway_get(mesh, service, namespace, "/productpage")
        except (OSError, TimeoutError):
            status = 0
        if status == 200:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{namespace}/{service} did not route /productpage within {timeout_s}s (last {status})")


async def wait_synced(mesh: Mesh, timeout_s: float = 10.0) -> None:
    """Until every proxy says it runs the config the operator holds for it."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = {row.pod_key: row for row in mesh.control.hub.connected()}
        wanted = {pod.key: mesh.control.hub.get(pod.key) for pod in mesh.workloads}
        if all(key in rows and config is not None and rows[key].version_in_force == config.version
               for key, config in wanted.items()):
            return
        assert time.monotonic() < deadline, f"proxies not synced within {timeout_s}s: {rows}"
        await asyncio.sleep(0.05)


async def gateway_traces(mesh: Mesh, since: int, count: int, gateway: str) -> Checked:
    """The `count` traces since `since`, complete and rooted at `gateway`, through the Zipkin API and then the
    Jaeger API of the collector; what the Zipkin API gave, checked."""
    async with mesh.forward("zipkin") as zipkin:
        traces = await wait_for_complete_traces(zipkin.url, "zipkin", since, count, gateway=gateway)
    result = check_traces(traces, pod_ips(mesh), gateway=gateway)
    assert all(len(trace) in (7, 9) for trace in traces)
    async with mesh.forward("tracing") as jaeger:
        check_traces(await wait_for_complete_traces(jaeger.url, "jaeger", since, count, gateway=gateway),
                     pod_ips(mesh), gateway=gateway)
    return result


async def through_the_gateway(mesh: Mesh, service: str, namespace: str, gateway: str) -> Checked:
    """Once routed, /nothing is 404 NR and REQUESTS GETs of /productpage give REQUESTS gateway-rooted traces
    answered by every reviews version."""
    await wait_routed(mesh, service, namespace)
    assert await gateway_get(mesh, service, namespace, "/nothing") == 404
    since = now_us()
    await send_requests(lambda: gateway_get(mesh, service, namespace, "/productpage"), REQUESTS)
    result = await gateway_traces(mesh, since, REQUESTS, gateway)
    check_every_reviews_version(result, REQUESTS)
    return result


async def test_istios_gateway_file_routes_through_the_ingress_gateway(mesh: Mesh, summary: list[str]) -> None:
    for document in documents("samples/bookinfo/networking/bookinfo-gateway.yaml"):
        mesh.control.apply_networking(document)
    result = await through_the_gateway(mesh, "istio-ingressgateway", "istio-system", INGRESS)
    summary.append(f"Bookinfo through istio-ingressgateway (bookinfo-gateway.yaml): {result.traces} traces rooted at "
                   f"the gateway via the Zipkin and Jaeger APIs, {result.spans} spans (reviews {result.versions})")


async def test_virtual_service_all_v1_sends_every_request_to_reviews_v1(mesh: Mesh, summary: list[str]) -> None:
    applied = [mesh.control.apply_networking(document)
               for relative in ("samples/bookinfo/networking/destination-rule-all.yaml",
                                "samples/bookinfo/networking/virtual-service-all-v1.yaml")
               for document in documents(relative)]
    try:
        await wait_synced(mesh)
        since = now_us()
        await send_requests(lambda: gateway_get(mesh, "istio-ingressgateway", "istio-system", "/productpage"), 20)
        async with mesh.forward("zipkin") as zipkin:
            traces = await wait_for_complete_traces(zipkin.url, "zipkin", since, 20, gateway=INGRESS)
        result = check_traces(traces, pod_ips(mesh), gateway=INGRESS)
    finally:
        for document in reversed(applied):
            mesh.control.delete_networking(document)
    assert result.versions == {"v1": 20}
    clusters = {span.tags["upstream_cluster"] for trace in traces for span in trace
                if span.kind == "CLIENT" and span.name.startswith("reviews.")}
    assert clusters == {"outbound|9080|v1|reviews.default.svc.cluster.local"}
    summary.append("virtual-service-all-v1.yaml + destination-rule-all.yaml: 20 of 20 requests answered by reviews v1")


async def test_the_gateway_api_file_gets_its_own_gateway_and_routes_through_it(mesh: Mesh,
                                                                                summary: list[str]) -> None:
    for document in documents("samples/bookinfo/networking/bookinfo-gateway.yaml"):
        mesh.control.delete_networking({**document, "metadata": {**document["metadata"], "namespace": "default"}})
    stored = [mesh.control.apply_networking(document)
              for document in documents("samples/bookinfo/gateway-api/bookinfo-gateway.yaml")]
    gateway = next(body for body in stored if body["kind"] == "Gateway")
    # The operator's deployment controller, as istiod's: the Gateway's own Deployment and Service.
    [pod] = mesh.add_objects(gateway_workload(gateway, "tracemesh/proxy:0.1.0", DISCOVERY_ADDRESS))
    mesh.cluster.sync()
    mesh.control.service_synced(*mesh.cluster.service("bookinfo-gateway-istio").api_objects())
    mesh.control.pod_added(pod.body)
    await mesh.kubelet.start(pod)
    result = await through_the_gateway(mesh, "bookinfo-gateway-istio", "default", GATEWAY_API_WORKLOAD)
    summary.append(f"Bookinfo through the Gateway API's bookinfo-gateway-istio: {result.traces} traces rooted at the "
                   f"gateway via the Zipkin and Jaeger APIs (reviews {result.versions})")
