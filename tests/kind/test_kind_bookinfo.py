"""Issue 4's kind end-to-end, after `make kind-up images kind-load deploy bookinfo`: the control
plane injected every Bookinfo pod, and Bookinfo's traces reach real Zipkin, then real Jaeger,
with the same shape the netns tests assert (tests/e2e_common/bookinfo_e2e.py), and a Telemetry
with sampling 0 stops them.

Requests go where Istio's tasks send them, `http://$GATEWAY_URL/productpage` through the ingress
gateway (`make bookinfo` applies samples/bookinfo/networking/bookinfo-gateway.yaml; kind maps the
gateway's node port to localhost:8080), so every trace is rooted at istio-ingressgateway.istio-system.
"""

from __future__ import annotations

import asyncio
import copy
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from bookinfo_e2e import (
    check_every_reviews_version,
    check_traces,
    now_us,
    send_requests,
    traces_since,
    wait_for_complete_traces,
)
from kube import PortForward, apply, kubectl, kubectl_json

pytestmark = [pytest.mark.kind, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
MESH_DEFAULT: dict[str, Any] = yaml.safe_load((REPO / "samples/bookinfo/telemetry.yaml").read_text())
BOOKINFO_APPS = {"productpage", "details", "reviews", "ratings"}
INGRESS = "istio-ingressgateway.istio-system"
NETWORKING = REPO / "samples/bookinfo/networking"
CONFIG_SETTLE_S = 3.0  # the mesh promises < 1 s; the margin covers the API server's watch latency


def bookinfo_pods() -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = kubectl_json(["get", "pods", "-n", "default"])["items"]
    return [pod for pod in pods if pod["metadata"].get("labels", {}).get("app") in BOOKINFO_APPS]


def pod_ips() -> dict[str, set[str]]:
    ips: dict[str, set[str]] = {}
    gateways = kubectl_json(["get", "pods", "-n", "istio-system", "-l", "istio=ingressgateway"])["items"]
    for pod in [*bookinfo_pods(), *gateways]:
        ips.setdefault(pod["metadata"]["labels"]["app"], set()).add(pod["status"]["podIP"])
    return ips


def telemetry(**tracing: Any) -> dict[str, Any]:
    body = copy.deepcopy(MESH_DEFAULT)
    body["spec"]["tracing"][0].update(tracing)
    return body


# Bookinfo's front door, as in Istio's tasks: the ingress gateway's node port, which kind/cluster.yaml
# maps to localhost:8080. Not a port-forward: that enters the pod over loopback, past the sidecar.
GATEWAY_URL = "localhost:8080"


@pytest.fixture(scope="module")
def productpage() -> str:
    return f"http://{os.environ.get('GATEWAY_URL', GATEWAY_URL)}"


async def get_productpage(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(f"{url}/productpage") as response:
        await response.read()
        return response.status


async def requests(url: str, count: int) -> None:
    async with aiohttp.ClientSession() as session:
        await send_requests(lambda: get_productpage(session, url), count)


def test_every_bookinfo_pod_has_the_sidecar_and_is_ready(summary: list[str]) -> None:
    pods = bookinfo_pods()
    assert {pod["metadata"]["labels"]["app"] for pod in pods} == BOOKINFO_APPS
    for pod in pods:
        name = pod["metadata"]["name"]
        assert "sidecar.istio.io/status" in pod["metadata"].get("annotations", {}), f"{name} was not injected"
        containers = pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
        assert {"istio-init", "istio-proxy"} <= {c["name"] for c in containers}, name
        ready = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", f"{name} is not Ready"
    summary.append(f"{len(pods)} Bookinfo pods, each injected and Ready")


async def test_the_gateway_answers_as_istios_tasks_expect(productpage: str, summary: list[str]) -> None:
    """`kubectl get gateway`, `kubectl get svc istio-ingressgateway -n istio-system`, then curl $GATEWAY_URL."""
    gateways = kubectl_json(["get", "gateways.networking.istio.io", "-n", "default"])["items"]
    assert [gateway["metadata"]["name"] for gateway in gateways] == ["bookinfo-gateway"]
    service = kubectl_json(["get", "svc", "istio-ingressgateway", "-n", "istio-system"])
    assert service["spec"]["type"] == "LoadBalancer"
    async with aiohttp.ClientSession() as session:
        assert await get_productpage(session, productpage) == 200
        async with session.get(f"{productpage}/nothing") as response:
            assert response.status == 404
    summary.append(f"{productpage}/productpage 200 through istio-ingressgateway, /nothing 404")


async def test_traces_in_zipkin_have_the_bookinfo_shape(productpage: str, summary: list[str]) -> None:
    since = now_us()
    await requests(productpage, 20)
    with PortForward("istio-system", "zipkin", 9411) as zipkin:
        traces = await wait_for_complete_traces(zipkin.url, "zipkin", since, 20, timeout_s=60, gateway=INGRESS)
    checked = check_traces(traces, pod_ips(), gateway=INGRESS)
    check_every_reviews_version(checked, 20)
    summary.append(f"Zipkin: {checked.traces} traces, {checked.spans} spans checked (reviews {checked.versions})")


async def test_traces_in_jaeger_after_switching_the_provider(productpage: str, summary: list[str]) -> None:
    apply(telemetry(providers=[{"name": "jaeger"}]))
    try:
        await asyncio.sleep(CONFIG_SETTLE_S)
        since = now_us()
        await requests(productpage, 10)
        with PortForward("istio-system", "tracing", 16686) as jaeger:
            traces = await wait_for_complete_traces(jaeger.url, "jaeger", since, 10, timeout_s=60, gateway=INGRESS)
        checked = check_traces(traces, pod_ips(), gateway=INGRESS)
        summary.append(f"Jaeger: {checked.traces} traces, {checked.spans} spans checked")
    finally:
        apply(MESH_DEFAULT)


async def test_sampling_zero_stops_new_traces(productpage: str) -> None:
    apply(telemetry(randomSamplingPercentage=0))
    try:
        await asyncio.sleep(CONFIG_SETTLE_S)
        since = now_us()
        await requests(productpage, 10)
        await asyncio.sleep(5)  # anything reported would have been exported by now
        with PortForward("istio-system", "zipkin", 9411) as zipkin:
            assert await traces_since(zipkin.url, "zipkin", since) == []
    finally:
        apply(MESH_DEFAULT)


async def test_virtual_service_all_v1_sends_every_request_to_reviews_v1(productpage: str, summary: list[str]) -> None:
    files = [str(NETWORKING / "destination-rule-all.yaml"), str(NETWORKING / "virtual-service-all-v1.yaml")]
    for path in files:
        kubectl(["apply", "-n", "default", "-f", path])
    try:
        await asyncio.sleep(CONFIG_SETTLE_S)
        since = now_us()
        await requests(productpage, 20)
        with PortForward("istio-system", "zipkin", 9411) as zipkin:
            traces = await wait_for_complete_traces(zipkin.url, "zipkin", since, 20, timeout_s=60, gateway=INGRESS)
        checked = check_traces(traces, pod_ips(), gateway=INGRESS)
    finally:
        for path in reversed(files):
            kubectl(["delete", "-n", "default", "-f", path])
    assert checked.versions == {"v1": 20}
    summary.append("virtual-service-all-v1.yaml: 20 of 20 requests answered by reviews v1")
