"""What the operator creates for the Gateway API, as istiod does: the GatewayClass `istio`, and for each Gateway
of that class its own Deployment and Service `<name>-istio` (istio/istio pilot/pkg/config/kube/gateway
deploymentcontroller.go and its kube-gateway template), owned by the Gateway so that they go with it. Pure.

The Deployment runs the proxy as a router (`tracemesh proxy router`), labelled
`gateway.networking.k8s.io/gateway-name: <name>`, which is what its Gateway's routes select; it binds the
listener ports themselves (80), as Istio's gateway pods do with `net.ipv4.ip_unprivileged_port_start=0`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracemesh_operator.compiler.gateway_api import CONTROLLER_NAME, GATEWAY_CLASS, GATEWAY_GROUP, GATEWAY_NAME_LABEL
from tracemesh_operator.injection.mutation import HEALTH_PORT, PROMETHEUS_PORT, bootstrap_env

Body = Mapping[str, Any]
MANAGED_LABEL = "gateway.istio.io/managed"  # Istio's label on what it deploys for a Gateway
MANAGED_VALUE = "istio.io-gateway-controller"
SERVICE_TYPE_ANNOTATION = "networking.istio.io/service-type"  # Istio's: e.g. ClusterIP where no load balancer is


def gateway_class() -> dict[str, Any]:
    """The GatewayClass istiod creates (its default `istio` class)."""
    return {"apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "GatewayClass", "metadata": {"name": GATEWAY_CLASS},
            "spec": {"controllerName": CONTROLLER_NAME,
                     "description": "The default Istio GatewayClass"}}


def workload_name(gateway: Body) -> str:
    return f"{gateway['metadata']['name']}-istio"


def _listener_ports(gateway: Body) -> list[tuple[int, str]]:
    spec = gateway.get("spec") or {}
    ports: dict[int, str] = {}
    for listener in spec.get("listeners") or ():
        if isinstance(listener, Mapping) and isinstance(listener.get("port"), int):
            ports.setdefault(listener["port"], str(listener.get("protocol") or "HTTP"))
    return sorted(ports.items())


def _owner(gateway: Body) -> dict[str, Any]:
    metadata = gateway["metadata"]
    return {"apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "Gateway", "name": metadata["name"],
            "uid": metadata.get("uid", ""), "controller": True}


def gateway_workload(gateway: Body, proxy_image: str, discovery_address: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Deployment and the Service of a Gateway of class `istio`."""
    metadata = gateway["metadata"]
    name, namespace = workload_name(gateway), metadata["namespace"]
    selector = {GATEWAY_NAME_LABEL: metadata["name"]}
    labels = {**selector, MANAGED_LABEL: MANAGED_VALUE}
    pod_labels = {**selector, "gateway.networking.k8s.io/gateway-class-name": GATEWAY_CLASS,
                  "service.istio.io/canonical-name": name, "service.istio.io/canonical-revision": "latest",
                  "sidecar.istio.io/inject": "false"}
    ports = _listener_ports(gateway)
    owned = {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [_owner(gateway)]}
    container = {
        "name": "istio-proxy", "image": proxy_image, "imagePullPolicy": "IfNotPresent",
        "command": ["tracemesh"], "args": ["proxy", "router", "--discovery", discovery_address, "--bootstrap-env"],
        "env": bootstrap_env((name, "latest"), pod_labels, ()),
        "ports": [*({"containerPort": port, "protocol": "TCP"} for port, _ in ports),
                  {"name": "status-port", "containerPort": HEALTH_PORT, "protocol": "TCP"},
                  {"name": "http-envoy-prom", "containerPort": PROMETHEUS_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": HEALTH_PORT},
                           "periodSeconds": 2, "failureThreshold": 30},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": owned,
        "spec": {"replicas": 1, "selector": {"matchLabels": selector}, "template": {
            "metadata": {"labels": pod_labels},
            "spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 1337, "runAsGroup": 1337,
                                         "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
                     "containers": [container],
                     "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory"}}]}}},
    }
    annotations = metadata.get("annotations") or {}
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": dict(owned),
        "spec": {"type": str(annotations.get(SERVICE_TYPE_ANNOTATION) or "LoadBalancer"), "selector": selector,
                 "ports": [{"name": "status-port", "port": HEALTH_PORT, "targetPort": HEALTH_PORT,
                            "protocol": "TCP", "appProtocol": "tcp"},
                           *({"name": f"{protocol.lower()}-{port}", "port": port, "targetPort": port,
                              "protocol": "TCP", "appProtocol": protocol.lower()} for port, protocol in ports)]},
    }
    return deployment, service
