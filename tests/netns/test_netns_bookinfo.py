"""Bookinfo, unmodified, in netns pods with injected sidecars: the CI end-to-end of issue 4.

Pods, Services and images come from samples/bookinfo/platform/kube/bookinfo.yaml and the
Bookinfo Dockerfiles; the sidecars from the webhook's patch; their configs from the operator's
code, pushed on 15010; the mesh configuration from the same YAML a cluster gets. Telemetry
changes go through the operator's push, live, while the sidecars run.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import yaml
from bookinfo_e2e import (
    check_every_reviews_version,
    check_traces,
    now_us,
    send_requests,
    traces_since,
    wait_for_complete_traces,
)
from netns_cluster import Cluster
from netns_mesh import REPO, Mesh, load_yaml
from netns_pods import Kubelet, http_status

from tracemesh_cli.backend_client import Api

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]

MESH_DEFAULT = load_yaml("samples/bookinfo/telemetry.yaml")
REQUESTS = 24


def bookinfo_objects() -> list[dict[str, Any]]:
    text = (REPO / "samples/bookinfo/platform/kube/bookinfo.yaml").read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(cluster: Cluster, kubelet: Kubelet) -> AsyncIterator[Mesh]:
    built = Mesh(cluster, kubelet, load_yaml("samples/bookinfo/meshconfig.yaml")["spec"])
    built.control.apply_telemetry(MESH_DEFAULT)
    built.add_objects(bookinfo_objects())
    try:
        await built.start()
        yield built
    finally:
        await built.close()


def pod_ips(mesh: Mesh) -> dict[str, set[str]]:
    ips: dict[str, set[str]] = {}
    for pod in mesh.workloads:
        ips.setdefault(pod.net.labels["app"], set()).add(pod.net.ip)
    return ips


async def productpage(mesh: Mesh) -> int:
    """GET /productpage through the productpage Service's ClusterIP, from the node (an ingress would)."""
    service = mesh.cluster.service("productpage")
    return await http_status(mesh.cluster.node, service.cluster_ip, 9080, "/productpage", timeout_s=10.0)


def telemetry(**tracing: Any) -> dict[str, Any]:
    """The mesh-default Telemetry with its tracing rule changed."""
    body = copy.deepcopy(MESH_DEFAULT)
    body["spec"]["tracing"][0].update(tracing)
    return body


async def apply_and_wait_synced(mesh: Mesh, body: dict[str, Any], timeout_s: float = 5.0) -> float:
    """Applies a Telemetry; returns the seconds until every sidecar says it runs the new config."""
    mesh.control.apply_telemetry(body)
    return await mesh.wait_synced(timeout_s)


async def quiet_count(mesh: Mesh, url: str, api: Api, since_us: int, requests: int) -> int:
    await send_requests(lambda: productpage(mesh), requests)
    await asyncio.sleep(1.5)  # three export flush intervals: anything reported has arrived by now
    return len(await traces_since(url, api, since_us))


async def test_bookinfo_traces_have_the_mesh_contract_shape(mesh: Mesh, summary: list[str]) -> None:
    since = now_us()
    await send_requests(lambda: productpage(mesh), REQUESTS)
    async with mesh.forward("zipkin") as zipkin:
        traces = await wait_for_complete_traces(zipkin.url, "zipkin", since, REQUESTS)
    result = check_traces(traces, pod_ips(mesh))
    assert result.traces == REQUESTS
    check_every_reviews_version(result, REQUESTS)
    summary.append(f"Bookinfo via the Zipkin API: {len(mesh.workloads)} pods, {result.traces} traces, "
                   f"{result.spans} spans checked (reviews versions {result.versions})")


async def test_jaeger_provider_through_otlp(mesh: Mesh, summary: list[str]) -> None:
    await apply_and_wait_synced(mesh, telemetry(providers=[{"name": "jaeger"}]))
    try:
        since = now_us()
        await send_requests(lambda: productpage(mesh), 6)
        async with mesh.forward("tracing") as jaeger:
            traces = await wait_for_complete_traces(jaeger.url, "jaeger", since, 6)
        result = check_traces(traces, pod_ips(mesh))
        summary.append(f"Bookinfo via the Jaeger API (OTLP): {len(mesh.workloads)} pods, {result.traces} traces, "
                       f"{result.spans} spans checked")
    finally:
        await apply_and_wait_synced(mesh, MESH_DEFAULT)


async def test_sampling_100_to_0_to_100_takes_effect_live(mesh: Mesh, summary: list[str]) -> None:
    async with mesh.forward("zipkin") as zipkin:
        to_zero = await apply_and_wait_synced(mesh, telemetry(randomSamplingPercentage=0))
        assert await quiet_count(mesh, zipkin.url, "zipkin", now_us(), 10) == 0
        back = await apply_and_wait_synced(mesh, MESH_DEFAULT)
        since = now_us()
        await send_requests(lambda: productpage(mesh), 5)
        check_traces(await wait_for_complete_traces(zipkin.url, "zipkin", since, 5), pod_ips(mesh))
    assert to_zero < 1.0 and back < 1.0
    summary.append(f"sampling 100 -> 0 in force on all {len(mesh.workloads)} sidecars after {to_zero * 1000:.0f} ms, "
                   f"0 -> 100 after {back * 1000:.0f} ms; 10 requests at 0% gave 0 traces")


async def test_disable_span_reporting_reports_nothing(mesh: Mesh) -> None:
    await apply_and_wait_synced(mesh, telemetry(disableSpanReporting=True))
    try:
        async with mesh.forward("zipkin") as zipkin:
            assert await quiet_count(mesh, zipkin.url, "zipkin", now_us(), 5) == 0
    finally:
        await apply_and_wait_synced(mesh, MESH_DEFAULT)


async def test_a_client_only_rule_changes_only_the_client_side(mesh: Mesh) -> None:
    """Istio's "no client spans" recipe: a second rule, `match: {mode: CLIENT}`, with reporting off."""
    body = copy.deepcopy(MESH_DEFAULT)
    body["spec"]["tracing"].append({"match": {"mode": "CLIENT"}, "disableSpanReporting": True})
    await apply_and_wait_synced(mesh, body)
    try:
        since = now_us()
        async with mesh.forward("zipkin") as zipkin:
            await send_requests(lambda: productpage(mesh), 5)
            await asyncio.sleep(1.5)
            traces = await traces_since(zipkin.url, "zipkin", since)
    finally:
        await apply_and_wait_synced(mesh, MESH_DEFAULT)
    assert len(traces) == 5
    for trace in traces:
        assert {span.kind for span in trace} == {"SERVER"}
        assert len(trace) in (3, 4)  # productpage, details, reviews (and ratings), joined by propagation
        assert len({span.trace_id for span in trace}) == 1


async def test_collector_killed_mid_run_requests_succeed_and_traces_resume(mesh: Mesh, summary: list[str]) -> None:
    mesh.kubelet.stop(mesh.collector, "collector")
    latencies = await send_requests(lambda: productpage(mesh), 20)  # every one answers 200
    mesh.kubelet.restart(mesh.collector, "collector")
    await mesh.kubelet.wait_ready(mesh.collector, "collector")
    since = now_us()
    await send_requests(lambda: productpage(mesh), 5)
    async with mesh.forward("zipkin") as zipkin:
        traces = await wait_for_complete_traces(zipkin.url, "zipkin", since, 5)
    check_traces(traces, pod_ips(mesh))
    summary.append(f"collector killed: 20/20 requests answered 200 (slowest {max(latencies) * 1000:.0f} ms); "
                   f"after its restart {len(traces)} complete traces")
