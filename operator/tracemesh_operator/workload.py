"""A pod, as the Kubernetes API gives it, -> who its proxy speaks for and the config it runs.

Pure functions of plain mappings, shared by the kopf handlers (config push) and the
injection webhook (bootstrap config), so both derive the same identity from the same pod.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from tracemesh_operator.compiler import CompiledTelemetry
from tracemesh_operator.compiler.providers import workload_providers
from tracemesh_operator.compiler.route_tables import CompiledRoutes
from tracemesh_operator.compiler.services import inbound_services
from tracemesh_sidecar.config import (
    DiscoveryConfig,
    InboundConfig,
    InboundPort,
    NodeIdentity,
    OutboundConfig,
    ProxyConfig,
    ServiceEntry,
)

# Istio's pkg/kube/labels/labels.go: the labels read for the canonical name and revision, in this order
# (nameLabels, revisionLabels), and the backward-compatible order GetApp reads for the tracing service name.
CANONICAL_SERVICE_LABELS = ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app")
CANONICAL_REVISION_LABELS = ("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version")
APP_LABELS = ("app", "app.kubernetes.io/name", "service.istio.io/canonical-name")
# MeshConfig `defaultConfig.tracingServiceName` (ProxyConfig.TracingServiceName), default APP_LABEL_AND_NAMESPACE.
TRACING_SERVICE_NAMES = ("APP_LABEL_AND_NAMESPACE", "CANONICAL_NAME_ONLY", "CANONICAL_NAME_AND_NAMESPACE")
DEFAULT_MESH_ID = "cluster.local"
# The proxy's own ports: a container declaring one of them is the proxy, not the application.
PROXY_PORTS = frozenset({15000, 15001, 15006, 15020, 15021, 15090})
_log = logging.getLogger(__name__)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def is_router(pod: Mapping[str, Any]) -> bool:
    """A gateway pod: a container runs `tracemesh proxy router ...`, as Istio's gateways run `pilot-agent proxy
    router` (no application, no capture: the proxy is the workload)."""
    for container in _list(_mapping(pod.get("spec")).get("containers")):
        words = [str(word) for word in (*_list(_mapping(container).get("command")),
                                        *_list(_mapping(container).get("args")))]
        if any(words[i:i + 2] == ["proxy", "router"] for i in range(len(words) - 1)):
            return True
    return False


def pod_labels(pod: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in _mapping(_mapping(pod.get("metadata")).get("labels")).items()}


def owner_workload_name(pod: Mapping[str, Any]) -> str | None:
    """The name of the workload that owns the pod: a ReplicaSet's Deployment, else the owner itself."""
    metadata = _mapping(pod.get("metadata"))
    owners = [_mapping(owner) for owner in _list(metadata.get("ownerReferences"))]
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if owner is None or not owner.get("name"):
        return None
    name = str(owner["name"])
    if owner.get("kind") == "ReplicaSet":
        # A Deployment's ReplicaSet is `{deployment}-{pod-template-hash}`.
        template_hash = pod_labels(pod).get("pod-template-hash")
        if template_hash and name.endswith(f"-{template_hash}"):
            return name[: -len(template_hash) - 1]
    return name


def _pod_name(pod: Mapping[str, Any]) -> str:
    metadata = _mapping(pod.get("metadata"))
    # A pod being admitted may have only `generateName` (`reviews-v1-5b4d8f9c7-`).
    return str(metadata.get("name") or str(metadata.get("generateName") or "unknown").rstrip("-"))


def _first_label(labels: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    """The value of the first of `keys` present, even empty (labels.go lookupLabelValue tests presence)."""
    return next((labels[key] for key in keys if key in labels), None)


def _workload_name(pod: Mapping[str, Any]) -> str:
    return owner_workload_name(pod) or _pod_name(pod)


def canonical_service(pod: Mapping[str, Any]) -> str:
    """labels.go CanonicalService: the first name label present, else the workload's name."""
    found = _first_label(pod_labels(pod), CANONICAL_SERVICE_LABELS)
    return found if found is not None else _workload_name(pod)


def canonical_revision(pod: Mapping[str, Any]) -> str:
    found = _first_label(pod_labels(pod), CANONICAL_REVISION_LABELS)
    return found if found is not None else "latest"


def tracing_service_name(pod: Mapping[str, Any], mesh_spec: Mapping[str, Any]) -> str:
    """Envoy's service cluster, every span's `localEndpoint.serviceName`, as Istio's bootstrap picks it
    (pkg/bootstrap/config.go getServiceCluster, serviceClusterOrDefault): by default the `app` label (then
    `app.kubernetes.io/name`, then the canonical-name label: labels.go GetApp) dot namespace, else the
    workload's name dot namespace; the canonical name under CANONICAL_NAME_ONLY / _AND_NAMESPACE."""
    namespace = _namespace(pod)
    mode = _mapping(mesh_spec.get("defaultConfig")).get("tracingServiceName") or TRACING_SERVICE_NAMES[0]
    if mode == "CANONICAL_NAME_AND_NAMESPACE":
        return f"{canonical_service(pod)}.{namespace}"
    if mode == "CANONICAL_NAME_ONLY" and canonical_service(pod) not in ("", "istio-proxy"):
        return canonical_service(pod)
    app = _first_label(pod_labels(pod), APP_LABELS)
    return f"{app if app is not None else _workload_name(pod)}.{namespace}"


def _namespace(pod: Mapping[str, Any]) -> str:
    return str(_mapping(pod.get("metadata")).get("namespace") or "default")


def mesh_id(mesh_spec: Mapping[str, Any]) -> str:
    """Istio's `defaultConfig.meshId`, else the trust domain, else `cluster.local`."""
    configured = _mapping(mesh_spec.get("defaultConfig")).get("meshId") or mesh_spec.get("trustDomain")
    return str(configured) if configured else DEFAULT_MESH_ID


def node_identity(pod: Mapping[str, Any], mesh_spec: Mapping[str, Any]) -> NodeIdentity:
    spec = _mapping(pod.get("spec"))
    return NodeIdentity(
        pod_name=_pod_name(pod),
        namespace=_namespace(pod),
        # Empty until the pod is scheduled (at admission); the sidecar takes its IP from the downward API then.
        pod_ip=str(_mapping(pod.get("status")).get("podIP") or "127.0.0.1"),
        canonical_service=canonical_service(pod),
        canonical_revision=canonical_revision(pod),
        service_account=str(spec.get("serviceAccountName") or "default"),
        mesh_id=mesh_id(mesh_spec),
        labels=pod_labels(pod),
        tracing_service_name=tracing_service_name(pod, mesh_spec),
    )


def _container_ports(pod: Mapping[str, Any]) -> tuple[list[int], dict[str, int]]:
    """The application containers' TCP ports in declaration order, each once, and those that have a name."""
    ports: list[int] = []
    named: dict[str, int] = {}
    for container in _list(_mapping(pod.get("spec")).get("containers")):
        for entry in _list(_mapping(container).get("ports")):
            entry = _mapping(entry)
            port = entry.get("containerPort")
            if (not isinstance(port, int) or isinstance(port, bool) or port in PROXY_PORTS
                    or str(entry.get("protocol") or "TCP") != "TCP"):
                continue
            if entry.get("name"):
                named.setdefault(str(entry["name"]), port)
            if port not in ports:
                ports.append(port)
    return ports, named


def inbound_ports(pod: Mapping[str, Any], namespace_services: Iterable[Mapping[str, Any]] = ()) -> tuple[
        InboundPort, ...]:
    """The application's TCP ports, each named after the Service targeting it, if any (Istio's inbound chains), with
    that Service port's protocol.

    A port a Service targets is fronted even when no container declares it, as Istio builds a chain per
    target port; then come the containers' other ports, in declaration order.
    """
    declared, named = _container_ports(pod)
    targeted = inbound_services(namespace_services, pod_labels(pod), named)
    ports = declared + sorted(set(targeted) - set(declared) - PROXY_PORTS)
    result = []
    for port in ports:
        if port in targeted:
            host, service_port, protocol = targeted[port]
            result.append(InboundPort(port, port, service_host=host, service_port=service_port, protocol=protocol))
        else:
            result.append(InboundPort(port, port))
    return tuple(result)


def proxy_config_for_pod(pod: Mapping[str, Any], compiled: CompiledTelemetry, mesh_spec: Mapping[str, Any],
                         discovery_address: str | None, version: str,
                         services: tuple[ServiceEntry, ...] = (),
                         namespace_services: Iterable[Mapping[str, Any]] = (),
                         routes: CompiledRoutes | None = None) -> ProxyConfig:
    """The full config of the pod's proxy: its identity, its app's ports (named after the Services of
    `namespace_services` that select it), the mesh's services, the compiled telemetry and routes.

    A router (`routes.gateway` set) fronts no application: it serves the gateway's listeners instead."""
    router = routes is not None and routes.gateway is not None
    metadata = _mapping(pod.get("metadata"))
    providers, problems = workload_providers(compiled.providers, _mapping(metadata.get("annotations")),
                                             f"Pod {metadata.get('namespace')}/{metadata.get('name')}")
    for problem in problems:  # a pod has no status conditions of ours: the operator's log says it
        _log.warning("%s", problem.message)
    return ProxyConfig(
        node=node_identity(pod, mesh_spec),
        version=version,
        proxy_type="router" if router else "sidecar",
        gateway=routes.gateway if routes is not None else None,
        route_tables=routes.route_tables if routes is not None else (),
        inbound=InboundConfig(ports=() if router else inbound_ports(pod, namespace_services)),
        outbound=OutboundConfig(services=services),
        tracing=compiled.tracing,
        providers=providers,
        metrics=compiled.metrics,
        access_logs=compiled.access_logs,
        discovery=DiscoveryConfig(address=discovery_address) if discovery_address else None,
    )
