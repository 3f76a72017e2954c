"""Acceptance against kmock: Bookinfo's networking files (istio/istio samples, verbatim) through the real operator.

The ingress gateway (manifests/ingressgateway.yaml's Service, a pod running `tracemesh proxy router`) and the
productpage sidecar are real discovery subscriptions; the statuses are read back from the emulator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from test_operator_kmock import INJECTED, Sidecar, create, mesh, obj, until
from test_operator_kmock_istio import condition

from tracemesh_operator.control_plane import ControlPlane
from tracemesh_sidecar.config import ProxyConfig

__all__ = ["mesh"]  # the fixture, shared with test_operator_kmock
REPO = Path(__file__).resolve().parents[2]
NETWORKING = REPO / "samples" / "bookinfo" / "networking"
PLURALS = {"Gateway": "gateways", "VirtualService": "virtualservices", "DestinationRule": "destinationrules"}
GATEWAY_POD = "istio-ingressgateway-5d9f7c-abcde"
# Bookinfo's pods: name, app, version, IP
PODS = (("productpage-v1-1", "productpage", "v1", "10.244.0.10"), ("reviews-v1-1", "reviews", "v1", "10.244.0.11"),
        ("reviews-v2-1", "reviews", "v2", "10.244.0.12"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


async def apply_sample(emulator: kmock.KubernetesEmulator, name: str, created: str) -> None:
    """A sample file, as `kubectl apply -f` in namespace default."""
    for doc in documents(NETWORKING / name):
        # A uid, as the API server gives one: kopf's indexes tell objects of one name apart by it.
        doc["metadata"].update(namespace="default", creationTimestamp=created,
                               uid=f"uid-{doc['kind']}-{doc['metadata']['name']}")
        await create(emulator, f"/apis/networking.istio.io/v1/namespaces/default/{PLURALS[doc['kind']]}", doc)


def endpoint_slice(service: str, port: int, pods: list[tuple[str, str]]) -> dict[str, Any]:
    return obj("discovery.k8s.io/v1", "EndpointSlice", f"{service}-abc", "default",
               metadata={"labels": {"kubernetes.io/service-name": service}, "uid": f"uid-eps-{service}"},
               addressType="IPv4",
               ports=[{"name": "http", "port": port, "protocol": "TCP"}],
               endpoints=[{"addresses": [ip], "conditions": {"ready": True},
                           "targetRef": {"kind": "Pod", "namespace": "default", "name": name}} for name, ip in pods])


def installed_gateway_service() -> dict[str, Any]:
    service = next(doc for doc in documents(REPO / "manifests" / "ingressgateway.yaml") if doc["kind"] == "Service")
    service["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    service["spec"].update(clusterIP="10.96.0.80", clusterIPs=["10.96.0.80"])
    return service


@pytest.fixture
async def bookinfo(mesh: tuple[kmock.KubernetesEmulator, ControlPlane]) -> AsyncIterator[
        tuple[kmock.KubernetesEmulator, Sidecar, Sidecar]]:
    """Bookinfo's productpage and reviews (v1, v2) with their Services, and Istio's ingress gateway."""
    emulator, control_plane = mesh
    assert control_plane.discovery_port is not None
    await create(emulator, "/api/v1/namespaces/istio-system/services", installed_gateway_service())
    await create(emulator, "/api/v1/namespaces/istio-system/pods", obj(
        "v1", "Pod", GATEWAY_POD, "istio-system",
        metadata={"labels": {"app": "istio-ingressgateway", "istio": "ingressgateway"}},
        spec={"containers": [{"name": "istio-proxy", "command": ["tracemesh"],
                               "args": ["proxy", "router", "--discovery", "x:15010", "--bootstrap-env"],
                               "ports": [{"containerPort": 8080, "name": "http2"}]}]},
        status={"podIP": "10.244.0.2"}))
    for name, app, version, ip in PODS:
        await create(emulator, "/api/v1/namespaces/default/pods", obj(
            "v1", "Pod", name, "default", metadata={"labels": {"app": app, "version": version},
                                                    "annotations": INJECTED},
            spec={"containers": [{"name": app, "ports": [{"containerPort": 9080}]}]}, status={"podIP": ip}))
    for index, app in enumerate(("productpage", "reviews")):
        await create(emulator, "/api/v1/namespaces/default/services", obj(
            "v1", "Service", app, "default", metadata={"uid": f"uid-svc-{app}"}, spec={
                "type": "ClusterIP", "clusterIP": f"10.96.1.{index}", "clusterIPs": [f"10.96.1.{index}"],
                "selector": {"app": app}, "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}))
        await create(emulator, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", endpoint_slice(
            app, 9080, [(name, ip) for name, pod_app, _, ip in PODS if pod_app == app]))
    gateway = Sidecar(control_plane.discovery_port, "istio-system", GATEWAY_POD)
    productpage = Sidecar(control_plane.discovery_port, "default", "productpage-v1-1")
    try:
        await until(lambda: bool(gateway.configs) and bool(productpage.configs), timeout_s=5.0)
        yield emulator, gateway, productpage
    finally:
        await gateway.close()
        await productpage.close()


def latest(proxy: Sidecar) -> ProxyConfig:
    return proxy.configs[-1]


async def test_bookinfo_gateway_routes_reach_the_ingress_gateway(
        bookinfo: tuple[kmock.KubernetesEmulator, Sidecar, Sidecar]) -> None:
    emulator, gateway, productpage = bookinfo
    assert latest(gateway).proxy_type == "router" and latest(productpage).proxy_type == "sidecar"
    await apply_sample(emulator, "bookinfo-gateway.yaml", "2026-01-02T00:00:00Z")
    await until(lambda: bool(getattr(latest(gateway).route_table("http.8080"), "virtual_hosts", ())), timeout_s=3.0)
    config = latest(gateway)
    assert config.gateway is not None
    assert [(listener.address, listener.route_table) for listener in config.gateway.listeners] == [
        ("0.0.0.0:8080", "http.8080")]
    table = config.route_table("http.8080")
    assert table is not None
    [virtual_host] = table.virtual_hosts
    assert (virtual_host.name, virtual_host.domains) == ("default/bookinfo", ("*",))
    assert [route.decorator for route in virtual_host.routes][:2] == [
        "productpage.default.svc.cluster.local:9080/productpage", "productpage.default.svc.cluster.local:9080/static*"]
    # A gateway fronts no application, and no sidecar binds the gateway's VirtualService.
    assert config.inbound.ports == ()
    assert latest(productpage).route_tables == ()
    resource = "networking.istio.io/v1/virtualservices"
    await until(lambda: (condition(emulator, resource, "default", "bookinfo", "Ready") or {}).get("status") == "True")
    honoured = condition(emulator, resource, "default", "bookinfo", "Honoured")
    assert honoured is not None and honoured["status"] == "True"


async def test_all_v1_routes_in_the_callers_sidecar_over_the_subsets_endpoints(
        bookinfo: tuple[kmock.KubernetesEmulator, Sidecar, Sidecar]) -> None:
    emulator, _, productpage = bookinfo
    await apply_sample(emulator, "destination-rule-all.yaml", "2026-01-02T00:00:00Z")
    await apply_sample(emulator, "virtual-service-all-v1.yaml", "2026-01-03T00:00:00Z")

    def reviews_route() -> tuple[str, str | None] | None:
        table = latest(productpage).route_table("outbound")
        hosts = {vh.name: vh for vh in table.virtual_hosts} if table else {}
        if "default/reviews" not in hosts:
            return None
        [destination] = hosts["default/reviews"].routes[0].destinations
        return destination.host, destination.subset

    await until(lambda: reviews_route() == ("reviews.default.svc.cluster.local", "v1"), timeout_s=3.0)
    [reviews] = [entry for entry in latest(productpage).outbound.services if entry.host.startswith("reviews.")]
    assert {subset.name: subset.endpoints for subset in reviews.subsets} == {
        "v1": ("10.244.0.11:9080",), "v2": ("10.244.0.12:9080",), "v3": ()}
    await until(lambda: (condition(emulator, "networking.istio.io/v1/destinationrules", "default", "reviews",
                                   "Ready") or {}).get("status") == "True")


async def test_fault_injection_is_accepted_and_reported_not_honoured(
        bookinfo: tuple[kmock.KubernetesEmulator, Sidecar, Sidecar]) -> None:
    emulator, _, _ = bookinfo
    await apply_sample(emulator, "fault-injection-details-v1.yaml", "2026-01-02T00:00:00Z")
    resource = "networking.istio.io/v1/virtualservices"
    await until(lambda: (condition(emulator, resource, "default", "details", "Honoured") or {}).get("status")
                == "False")
    honoured = condition(emulator, resource, "default", "details", "Honoured")
    assert honoured is not None and "spec.http[0].fault" in honoured["message"]
    ready = condition(emulator, resource, "default", "details", "Ready")
    assert ready is not None and ready["status"] == "True"


GATEWAY_API = REPO / "samples" / "bookinfo" / "gateway-api" / "bookinfo-gateway.yaml"
K8S_GATEWAYS = "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways"


def emulated(emulator: kmock.KubernetesEmulator, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
    try:
        body: dict[str, Any] = emulator.objects[resource, namespace, name].raw
    except KeyError:
        return {}
    return body


def status_condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


async def test_the_gateway_api_bookinfo_gateway_gets_its_deployment_routes_and_status(
        mesh: tuple[kmock.KubernetesEmulator, ControlPlane],
        bookinfo: tuple[kmock.KubernetesEmulator, Sidecar, Sidecar]) -> None:
    emulator, _, _ = bookinfo
    _, control_plane = mesh
    assert control_plane.discovery_port is not None
    # The operator created istiod's GatewayClass and accepted it.
    await until(lambda: status_condition(emulated(emulator, "gateway.networking.k8s.io/v1/gatewayclasses", None,
                                                  "istio"), "Accepted").get("status") == "True", timeout_s=3.0)
    for doc in documents(GATEWAY_API):
        doc["metadata"].update(namespace="default", uid=f"uid-{doc['kind']}", creationTimestamp="2026-01-02T00:00:00Z")
        plural = "gateways" if doc["kind"] == "Gateway" else "httproutes"
        await create(emulator, f"/apis/gateway.networking.k8s.io/v1/namespaces/default/{plural}", doc)
    # Like istiod: a Deployment and a Service `<name>-istio`, owned by the Gateway.
    await until(lambda: bool(emulated(emulator, "v1/services", "default", "bookinfo-gateway-istio")), timeout_s=3.0)
    deployment = emulated(emulator, "apps/v1/deployments", "default", "bookinfo-gateway-istio")
    [owner] = deployment["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Gateway", "bookinfo-gateway", "uid-Gateway")
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"] == "bookinfo-gateway"
    service = emulated(emulator, "v1/services", "default", "bookinfo-gateway-istio")
    assert service["spec"]["type"] == "LoadBalancer"
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(15021, 15021), (80, 80)]
    # Kubernetes would run the Deployment's pod and list it in the Service's endpoints; here the test does.
    await emulator_patch(emulator, "/api/v1/namespaces/default/services/bookinfo-gateway-istio",
                         {"spec": {"clusterIP": "10.96.2.2", "clusterIPs": ["10.96.2.2"]}})
    await create(emulator, "/api/v1/namespaces/default/pods", obj(
        "v1", "Pod", "bookinfo-gateway-istio-1", "default", metadata={
            "labels": template["metadata"]["labels"], "uid": "uid-pod-gw"},
        spec=template["spec"], status={"podIP": "10.244.0.20"}))
    await create(emulator, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", obj(
        "discovery.k8s.io/v1", "EndpointSlice", "bookinfo-gateway-istio-abc", "default",
        metadata={"labels": {"kubernetes.io/service-name": "bookinfo-gateway-istio"}, "uid": "uid-eps-gw"},
        addressType="IPv4", ports=[{"name": "http-80", "port": 80, "protocol": "TCP"}],
        endpoints=[{"addresses": ["10.244.0.20"], "conditions": {"ready": True}}]))
    router = Sidecar(control_plane.discovery_port, "default", "bookinfo-gateway-istio-1")
    try:
        await until(lambda: bool(router.configs) and bool(getattr(router.configs[-1].route_table("http.80"),
                                                                   "virtual_hosts", ())), timeout_s=3.0)
        config = router.configs[-1]
        assert config.proxy_type == "router" and config.gateway is not None
        assert [(listener.address, listener.port) for listener in config.gateway.listeners] == [("0.0.0.0:80", 80)]
        table = config.route_table("http.80")
        assert table is not None
        [virtual_host] = table.virtual_hosts
        assert virtual_host.name == "default/bookinfo"
        assert virtual_host.routes[0].decorator == "productpage.default.svc.cluster.local:9080/productpage"
    finally:
        await router.close()
    # Status as istiod writes it: the route accepted by its parent, the Gateway accepted, its address pending
    # (a LoadBalancer Service without an external address), one route attached to the listener.
    await until(lambda: emulated(emulator, "gateway.networking.k8s.io/v1/gateways", "default", "bookinfo-gateway").get(
        "status", {}).get("addresses") == [{"type": "IPAddress", "value": "10.96.2.2"}], timeout_s=3.0)
    gateway = emulated(emulator, "gateway.networking.k8s.io/v1/gateways", "default", "bookinfo-gateway")
    assert status_condition(gateway, "Accepted")["status"] == "True"
    assert status_condition(gateway, "Programmed") | {"lastTransitionTime": None} == {
        "type": "Programmed", "status": "False", "reason": "AddressNotAssigned", "lastTransitionTime": None,
        "message": "Assigned to service(s) bookinfo-gateway-istio.default.svc.cluster.local:80, but failed to assign "
                   'to all requested addresses: address pending for hostname '
                   '"bookinfo-gateway-istio.default.svc.cluster.local"'}
    assert gateway["status"]["listeners"][0]["attachedRoutes"] == 1
    route = emulated(emulator, "gateway.networking.k8s.io/v1/httproutes", "default", "bookinfo")
    [parent] = route["status"]["parents"]
    assert parent["controllerName"] == "istio.io/gateway-controller"
    assert [(c["type"], c["status"]) for c in parent["conditions"]] == [("Accepted", "True"), ("ResolvedRefs", "True")]
    # Once the load balancer has its address, the Gateway is Programmed and reports it.
    await emulator_patch(emulator, "/api/v1/namespaces/default/services/bookinfo-gateway-istio/status",
                         {"status": {"loadBalancer": {"ingress": [{"ip": "172.18.255.1"}]}}})
    await until(lambda: status_condition(emulated(emulator, "gateway.networking.k8s.io/v1/gateways", "default",
                                                  "bookinfo-gateway"), "Programmed").get("status") == "True",
                timeout_s=3.0)
    gateway = emulated(emulator, "gateway.networking.k8s.io/v1/gateways", "default", "bookinfo-gateway")
    assert gateway["status"]["addresses"] == [{"type": "IPAddress", "value": "172.18.255.1"}]
    assert status_condition(gateway, "Programmed")["message"] == (
        "Resource programmed, assigned to service(s) bookinfo-gateway-istio.default.svc.cluster.local:80")


async def emulator_patch(emulator: kmock.KubernetesEmulator, path: str, patch: dict[str, Any]) -> None:
    async with emulator.patch(path, json=patch) as response:
        assert response.status == 200, await response.text()
