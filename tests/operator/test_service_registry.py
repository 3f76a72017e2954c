"""The service registry (Services + EndpointSlices -> ServiceEntry per port), and how MeshState pushes it."""

from __future__ import annotations

from typing import Any

import pytest
from service_objects import endpoint_slice, service

from tracemesh_operator.compiler.services import service_registry
from tracemesh_operator.discovery.hub import ConfigHub
from tracemesh_operator.records import slim_endpoint_slice, slim_service
from tracemesh_operator.state import MeshState, World
from tracemesh_sidecar.config import ServiceEntry

HTTP = [{"name": "http", "port": 9080, "targetPort": 9080, "protocol": "TCP"}]
REVIEWS = "reviews.default.svc.cluster.local"


def registry(services: list[dict[str, Any]], slices: list[dict[str, Any]]) -> tuple[ServiceEntry, ...]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for body in slices:
        key = f"{body['metadata']['namespace']}/{body['metadata']['labels']['kubernetes.io/service-name']}"
        grouped.setdefault(key, []).append(slim_endpoint_slice(body))
    return service_registry([slim_service(body) for body in services], grouped)


def test_one_entry_per_port_with_the_ready_endpoints_of_every_slice() -> None:
    ports = [{"name": "http", "port": 9080, "targetPort": "http-web"},
             {"name": "grpc", "port": 7070, "targetPort": 7000}]
    slice_ports = [{"name": "http", "port": 8080}, {"name": "grpc", "port": 7000}]
    entries = registry([service("default", "reviews", "10.96.0.7", ports)], [
        endpoint_slice("default", "reviews", "reviews-a", slice_ports, ready=["10.244.0.2", "10.244.0.1"],
                       not_ready=("10.244.0.9",)),
        endpoint_slice("default", "reviews", "reviews-b", slice_ports, ready=["10.244.1.5"]),
    ])
    assert entries == (
        ServiceEntry(REVIEWS, 7070, ("10.244.0.1:7000", "10.244.0.2:7000", "10.244.1.5:7000"), ("10.96.0.7",),
                     protocol="GRPC"),
        ServiceEntry(REVIEWS, 9080, ("10.244.0.1:8080", "10.244.0.2:8080", "10.244.1.5:8080"), ("10.96.0.7",),
                     protocol="HTTP"),
    )


def test_an_unnamed_port_matches_by_its_numeric_target_port() -> None:
    entries = registry([service("default", "ratings", "10.96.0.8", [{"port": 9080, "targetPort": 19080}])],
                       [endpoint_slice("default", "ratings", "ratings-a", [{"name": "other", "port": 19080}],
                                       ready=["10.244.0.3"])])
    assert entries[0].endpoints == ("10.244.0.3:19080",)


def test_services_kube_proxy_does_not_route_are_left_out() -> None:
    headless = service("default", "db", "None", HTTP)
    external = service("default", "ext", "10.96.0.9", HTTP)
    del external["spec"]["clusterIP"], external["spec"]["clusterIPs"]
    udp = service("default", "dns", "10.96.0.10", [{"name": "dns", "port": 53, "protocol": "UDP"}])
    assert registry([headless, external, udp], []) == ()


def test_a_service_without_slices_has_an_entry_without_endpoints() -> None:
    # The sidecar answers 503 UH for it, as Envoy answers "no healthy upstream".
    assert registry([service("default", "reviews", "10.96.0.7", HTTP)], []) == (
        ServiceEntry(REVIEWS, 9080, (), ("10.96.0.7",), protocol="HTTP"),)


# Each port's protocol as Istio's ConvertProtocol selects it (pkg/config/kube/conversion.go): appProtocol, else the
# port name's prefix; "" when neither declares one (the sidecar sniffs it).
@pytest.mark.parametrize(("port", "protocol"), [
    ({"name": "grpc-web", "port": 9080}, "GRPC-Web"),
    ({"name": "http2-foo", "port": 9080}, "HTTP2"),
    ({"name": "http", "appProtocol": "grpc", "port": 9080}, "GRPC"),
    ({"name": "web", "appProtocol": "kubernetes.io/h2c", "port": 9080}, "HTTP2"),
    ({"port": 9080}, ""),
    ({"name": "backend", "port": 9080}, ""),
    ({"port": 3306}, "TCP"),  # a well-known port (MySQL) is TCP, not sniffed
])
def test_each_entry_carries_its_ports_protocol_through_the_slim_record(port: dict[str, Any], protocol: str) -> None:
    [entry] = registry([service("default", "reviews", "10.96.0.7", [port])], [])
    assert entry.protocol == protocol


def test_mesh_state_pushes_the_registry_to_every_pod_only_when_it_changes() -> None:
    hub = ConfigHub()
    state = MeshState(hub, None)
    pods = {ns: [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"app-{ns}", "namespace": ns,
                                                                   "labels": {"app": "app"}},
                  "spec": {"containers": []}, "status": {"podIP": "10.244.9.9"}}] for ns in ("default", "other")}
    services = {"default/reviews": [slim_service(service("default", "reviews", "10.96.0.7", HTTP))]}

    def world(*ready: str) -> World:
        slices = {"default/reviews": [slim_endpoint_slice(
            endpoint_slice("default", "reviews", "reviews-a", [{"name": "http", "port": 9080}], ready=list(ready)))]}
        return World(pods, {}, {}, services=services, endpoint_slices=slices)

    state.pod_changed(pods["default"][0], False, world("10.244.0.1"))
    state.pod_changed(pods["other"][0], False, world("10.244.0.1"))
    first = {key: hub.get(key) for key in ("default/app-default", "other/app-other")}
    assert all(c is not None and c.outbound.services[0].endpoints == ("10.244.0.1:9080",) for c in first.values())

    state.services_changed(world("10.244.0.1"))  # e.g. a status-only change: nothing new
    assert {key: hub.get(key) for key in first} == first

    state.services_changed(world("10.244.0.1", "10.244.0.2"))  # scaled up: every pod, a new version
    for key, before in first.items():
        after = hub.get(key)
        assert after is not None and before is not None and after.version != before.version
        assert after.outbound.services[0].endpoints == ("10.244.0.1:9080", "10.244.0.2:9080")
