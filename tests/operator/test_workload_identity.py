"""A pod's identity as Istio derives it, and its inbound ports named after the Services selecting it.

Followed: istio/istio pkg/kube/labels/labels.go (CanonicalService, GetApp), pkg/bootstrap/config.go
(getServiceCluster, serviceClusterOrDefault), pilot/pkg/model/context.go (SetServiceTargets: oldest
Service first) and pilot/pkg/networking/core/listener_inbound.go (one chain per target port).
"""

from __future__ import annotations

from typing import Any

import pytest

from tracemesh_operator.compiler import compile_telemetry
from tracemesh_operator.records import slim_pod, slim_service
from tracemesh_operator.workload import (
    canonical_revision,
    canonical_service,
    inbound_ports,
    proxy_config_for_pod,
    tracing_service_name,
)
from tracemesh_sidecar.config import InboundPort, dump_proxy_config, parse_proxy_config

DEPLOYMENT_OWNED = {"ownerReferences": [{"kind": "ReplicaSet", "name": "reviews-v2-7f9c6d8b5", "controller": True}]}


def pod(labels: dict[str, str], ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "reviews-v2-7f9c6d8b5-x2", "namespace": "bookinfo",
                         "labels": {"pod-template-hash": "7f9c6d8b5", **labels}, **DEPLOYMENT_OWNED},
            "spec": {"containers": [{"name": "app", "ports": ports or []}]}}


# labels.go nameLabels / revisionLabels: the first label *present* wins, even with an empty value.
@pytest.mark.parametrize(("labels", "service", "revision"), [
    ({"service.istio.io/canonical-name": "c", "app.kubernetes.io/name": "k", "app": "a"}, "c", "latest"),
    ({"app.kubernetes.io/name": "k", "app": "a", "version": "v1"}, "k", "v1"),
    ({"app": "a", "app.kubernetes.io/version": "k1", "version": "v1"}, "a", "k1"),
    ({"service.istio.io/canonical-name": "", "app": "a", "service.istio.io/canonical-revision": ""}, "", ""),
    ({}, "reviews-v2", "latest"),  # the workload name: the Deployment behind the ReplicaSet
])
def test_canonical_service_and_revision_as_labels_go(labels: dict[str, str], service: str, revision: str) -> None:
    assert (canonical_service(pod(labels)), canonical_revision(pod(labels))) == (service, revision)


# serviceClusterOrDefault: GetApp reads `app` first (backward-compatible order), then app.kubernetes.io/name, then
# the canonical-name label; else the workload name; always dot namespace under APP_LABEL_AND_NAMESPACE.
@pytest.mark.parametrize(("labels", "mode", "expected"), [
    ({"app": "a", "app.kubernetes.io/name": "k", "service.istio.io/canonical-name": "c"}, None, "a.bookinfo"),
    ({"app.kubernetes.io/name": "k", "service.istio.io/canonical-name": "c"}, None, "k.bookinfo"),
    ({"service.istio.io/canonical-name": "c"}, "APP_LABEL_AND_NAMESPACE", "c.bookinfo"),
    ({}, None, "reviews-v2.bookinfo"),
    ({"app": "a", "service.istio.io/canonical-name": "c"}, "CANONICAL_NAME_ONLY", "c"),
    ({"app": "a", "service.istio.io/canonical-name": "c"}, "CANONICAL_NAME_AND_NAMESPACE", "c.bookinfo"),
    ({"app": "a"}, "CANONICAL_NAME_AND_NAMESPACE", "a.bookinfo"),
    ({"app": "a", "service.istio.io/canonical-name": "istio-proxy"}, "CANONICAL_NAME_ONLY", "a.bookinfo"),
])
def test_tracing_service_name_as_istios_bootstrap(labels: dict[str, str], mode: str | None, expected: str) -> None:
    mesh = {"defaultConfig": {"tracingServiceName": mode}} if mode else {}
    assert tracing_service_name(pod(labels), mesh) == expected


def service(name: str, ports: list[dict[str, Any]], created: str = "2026-01-01T00:00:00Z",
            selector: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "bookinfo", "creationTimestamp": created},
            "spec": {"selector": {"app": "reviews"} if selector is None else selector, "ports": ports, **spec}}


def test_a_service_port_names_the_workload_port_it_targets() -> None:
    reviews = pod({"app": "reviews"}, [{"containerPort": 8090, "name": "http"}, {"containerPort": 9090}])
    ports = inbound_ports(reviews, [service("server", [{"port": 80, "targetPort": 8090}])])
    assert ports == (InboundPort(8090, 8090, service_host="server.bookinfo.svc.cluster.local", service_port=80),
                     InboundPort(9090, 9090))


def test_the_oldest_service_names_a_port_several_target() -> None:
    reviews = pod({"app": "reviews"}, [{"containerPort": 8090, "name": "http"}])
    services = [
        service("newer", [{"port": 8080, "targetPort": "http"}], created="2026-03-01T00:00:00Z"),
        service("b-same-age", [{"port": 81, "targetPort": 8090}], created="2026-02-01T00:00:00Z"),
        service("a-same-age", [{"port": 80, "targetPort": 8090}], created="2026-02-01T00:00:00Z"),
    ]
    assert inbound_ports(reviews, services) == (
        InboundPort(8090, 8090, service_host="a-same-age.bookinfo.svc.cluster.local", service_port=80),)


@pytest.mark.parametrize("other", [
    service("elsewhere", [{"port": 80, "targetPort": 8090}], selector={"app": "ratings"}),
    service("no-selector", [{"port": 80, "targetPort": 8090}], selector={}),
    service("external", [{"port": 80, "targetPort": 8090}], type="ExternalName"),
    service("udp", [{"port": 80, "targetPort": 8090, "protocol": "UDP"}]),
    service("unknown-name", [{"port": 80, "targetPort": "grpc"}]),
], ids=["selects another app", "no selector", "ExternalName", "UDP", "unknown named port"])
def test_services_that_do_not_target_the_port_leave_it_unnamed(other: dict[str, Any]) -> None:
    reviews = pod({"app": "reviews"}, [{"containerPort": 8090}])
    assert inbound_ports(reviews, [other]) == (InboundPort(8090, 8090),)


def test_a_targeted_port_no_container_declares_is_fronted_too() -> None:
    reviews = pod({"app": "reviews"}, [{"containerPort": 9080}])
    ports = inbound_ports(reviews, [service("reviews", [{"port": 9080}, {"port": 80, "targetPort": 8090}])])
    host = "reviews.bookinfo.svc.cluster.local"
    assert ports == (InboundPort(9080, 9080, service_host=host, service_port=9080),
                     InboundPort(8090, 8090, service_host=host, service_port=80))


@pytest.mark.parametrize(("service_port", "protocol"), [
    ({"name": "grpc-web", "port": 80}, "GRPC-Web"),
    ({"name": "http2-foo", "port": 80}, "HTTP2"),
    ({"name": "http", "appProtocol": "grpc", "port": 80}, "GRPC"),
    ({"port": 80}, ""),
])
def test_an_inbound_port_takes_the_protocol_of_the_service_port_targeting_it(service_port: dict[str, Any],
                                                                              protocol: str) -> None:
    # The same Service port names the chain and gives its protocol (the inbound cluster's, as Istio builds it).
    reviews = pod({"app": "reviews"}, [{"containerPort": 8090}, {"containerPort": 9090}])
    services = [service("server", [{**service_port, "targetPort": 8090}], type="ClusterIP", clusterIP="10.96.0.9")]
    expected = (InboundPort(8090, 8090, service_host="server.bookinfo.svc.cluster.local", service_port=80,
                            protocol=protocol),
                InboundPort(9090, 9090))  # no Service targets it: undeclared
    assert inbound_ports(reviews, services) == expected
    assert inbound_ports(slim_pod({"apiVersion": "v1", "kind": "Pod", **reviews}),
                         [slim_service(body) for body in services]) == expected


def test_the_oldest_service_names_the_port_and_gives_its_protocol() -> None:
    reviews = pod({"app": "reviews"}, [{"containerPort": 8090}])
    older = service("older", [{"name": "grpc", "port": 80, "targetPort": 8090}], created="2025-01-01T00:00:00Z")
    newer = service("newer", [{"name": "http", "port": 80, "targetPort": 8090}], created="2026-01-01T00:00:00Z")
    [port] = inbound_ports(reviews, [newer, older])
    assert (port.service_host, port.protocol) == ("older.bookinfo.svc.cluster.local", "GRPC")


def test_the_pushed_config_carries_the_identity_and_the_port_naming() -> None:
    mesh: dict[str, Any] = {"extensionProviders": [{"name": "zipkin", "zipkin": {"service": "zipkin.istio-system",
                                                                                 "port": 9411}}],
                            "defaultProviders": {"tracing": ["zipkin"]}}
    reviews = pod({"app": "reviews", "version": "v2"}, [{"containerPort": 8090}])
    compiled = compile_telemetry(mesh, [], "bookinfo", {"app": "reviews"})
    config = proxy_config_for_pod(reviews, compiled, mesh, None, "1",
                                  namespace_services=[service("server", [{"port": 80, "targetPort": 8090}])])
    assert config.node.service_name == "reviews.bookinfo"
    assert config.inbound.ports[0].operation(config.node.own_host) == "server.bookinfo.svc.cluster.local:80/*"
    assert parse_proxy_config(dump_proxy_config(config)) == config


def test_the_slim_records_kopf_keeps_name_the_ports_as_the_full_objects_do() -> None:
    reviews = pod({"app": "reviews"}, [{"containerPort": 8090, "name": "http"}])
    reviews.update(apiVersion="v1", kind="Pod")
    services = [service("server", [{"port": 80, "targetPort": "http"}], type="ClusterIP", clusterIP="10.96.0.9")]
    named = inbound_ports(reviews, services)
    assert named[0].service_host == "server.bookinfo.svc.cluster.local"
    assert inbound_ports(slim_pod(reviews), [slim_service(body) for body in services]) == named
