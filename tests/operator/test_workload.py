"""A pod -> its proxy's identity and config: canonical service/revision, ports, the compiled tracing."""

from __future__ import annotations

from typing import Any

import pytest

from tracemesh_operator.compiler import compile_telemetry
from tracemesh_operator.workload import canonical_revision, canonical_service, proxy_config_for_pod
from tracemesh_sidecar.config import InboundPort, dump_proxy_config, parse_proxy_config

MESH = {"extensionProviders": [{"name": "zipkin", "zipkin": {"service": "zipkin.istio-system.svc.cluster.local",
                                                             "port": 9411}}],
        "defaultProviders": {"tracing": ["zipkin"]}}


def pod(labels: dict[str, str] | None = None, owner: dict[str, Any] | None = None, name: str = "reviews-v2-7f9c-x2",
        **extra: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "bookinfo", "labels": labels or {}}
    if owner:
        metadata["ownerReferences"] = [dict(owner, controller=True)]
    return {"metadata": metadata, **extra}


REPLICA_SET = {"kind": "ReplicaSet", "name": "reviews-v2-7f9c6d8b5"}

SERVICE_CASES = [
    ("canonical-name label wins", {"service.istio.io/canonical-name": "svc", "app.kubernetes.io/name": "k",
                                   "app": "a"}, None, "svc"),
    ("then app.kubernetes.io/name", {"app.kubernetes.io/name": "k", "app": "a"}, None, "k"),
    ("then app", {"app": "a"}, None, "a"),
    ("then the Deployment behind the ReplicaSet", {"pod-template-hash": "7f9c6d8b5"}, REPLICA_SET, "reviews-v2"),
    ("a ReplicaSet without the hash label is its own workload", {}, REPLICA_SET, "reviews-v2-7f9c6d8b5"),
    ("a StatefulSet owner", {}, {"kind": "StatefulSet", "name": "db"}, "db"),
    ("then the pod name", {}, None, "reviews-v2-7f9c-x2"),
]


@pytest.mark.parametrize(("labels", "owner", "expected"), [c[1:] for c in SERVICE_CASES],
                         ids=[c[0] for c in SERVICE_CASES])
def test_canonical_service(labels: dict[str, str], owner: dict[str, Any] | None, expected: str) -> None:
    assert canonical_service(pod(labels, owner)) == expected


@pytest.mark.parametrize(("labels", "expected"), [
    ({"service.istio.io/canonical-revision": "r", "app.kubernetes.io/version": "k", "version": "v"}, "r"),
    ({"app.kubernetes.io/version": "k", "version": "v"}, "k"),
    ({"version": "v2"}, "v2"),
    ({}, "latest"),
])
def test_canonical_revision(labels: dict[str, str], expected: str) -> None:
    assert canonical_revision(pod(labels)) == expected


def test_a_pod_being_admitted_has_only_generate_name() -> None:
    admitted = {"metadata": {"generateName": "ratings-v1-5d8f9-", "namespace": "bookinfo"}}
    assert canonical_service(admitted) == "ratings-v1-5d8f9"


def test_proxy_config_for_pod_carries_identity_ports_and_tracing() -> None:
    body = pod({"app": "reviews", "version": "v2", "pod-template-hash": "7f9c6d8b5"}, REPLICA_SET,
               spec={"serviceAccountName": "bookinfo-reviews",
                     "containers": [{"name": "reviews", "ports": [{"containerPort": 9080}, {"containerPort": 9080},
                                                                 {"containerPort": 5353, "protocol": "UDP"}]},
                                    {"name": "metrics", "ports": [{"containerPort": 9090, "protocol": "TCP"}]},
                                    {"name": "istio-proxy", "ports": [{"containerPort": 15090},
                                                                          {"containerPort": 15021}]}]},
               status={"podIP": "10.244.0.7"})
    compiled = compile_telemetry(MESH, [], "bookinfo", {"app": "reviews"})
    config = proxy_config_for_pod(body, compiled, MESH, "tracemesh-discovery.istio-system.svc:15010", "9")
    node = config.node
    assert (node.pod_name, node.namespace, node.pod_ip, node.service_account) == (
        "reviews-v2-7f9c-x2", "bookinfo", "10.244.0.7", "bookinfo-reviews")
    assert (node.canonical_service, node.canonical_revision, node.service_name) == ("reviews", "v2", "reviews.bookinfo")
    assert node.labels["app"] == "reviews" and node.mesh_id == "cluster.local"
    assert config.inbound.ports == (InboundPort(9080, 9080), InboundPort(9090, 9090))
    assert config.tracing == compiled.tracing and config.providers == compiled.providers
    assert config.discovery is not None and config.discovery.address == "tracemesh-discovery.istio-system.svc:15010"
    assert config.version == "9"
    # The document the sidecar consumes reads back to the same config.
    assert parse_proxy_config(dump_proxy_config(config)) == config


def test_mesh_id_comes_from_the_mesh_config() -> None:
    compiled = compile_telemetry({}, [], "bookinfo", {})
    for mesh, expected in (({"defaultConfig": {"meshId": "east"}}, "east"), ({"trustDomain": "corp"}, "corp")):
        assert proxy_config_for_pod(pod(), compiled, mesh, None, "1").node.mesh_id == expected
    assert proxy_config_for_pod(pod(), compiled, {}, None, "1").discovery is None


def test_garbage_pod_fields_do_not_raise() -> None:
    compiled = compile_telemetry({}, [], "x", {})
    garbage = {"metadata": {"labels": None, "ownerReferences": "x"},
               "spec": {"containers": [{"ports": [{"containerPort": "80"}]}, None]}, "status": None}
    config = proxy_config_for_pod(garbage, compiled, {}, None, "1")
    assert config.node.pod_name == "unknown" and config.inbound.ports == ()
