"""A pod, as the Kubernetes API gives it, -> who its proxy speaks for and the config it runs.

Pure functions of plain mappings, shared by the kopf handlers (config push) and the
injection webhook (bootstrap config), so both derive the same identity from the same pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracemesh_operator.compiler import CompiledTracing
from tracemesh_sidecar.config import (
    DiscoveryConfig,
    InboundConfig,
    InboundPort,
    NodeIdentity,
    OutboundConfig,
    ProxyConfig,
    ServiceEntry,
)

CANONICAL_SERVICE_LABELS = ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app")
CANONICAL_REVISION_LABELS = ("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version")
DEFAULT_MESH_ID = "cluster.local"
# The proxy's own ports: a container declaring one of them is the proxy, not the application.
PROXY_PORTS = frozenset({15000, 15001, 15006, 15020, 15021, 15090})


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


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


def canonical_service(pod: Mapping[str, Any]) -> str:
    labels = pod_labels(pod)
    for key in CANONICAL_SERVICE_LABELS:
        if labels.get(key):
            return labels[key]
    return owner_workload_name(pod) or _pod_name(pod)


def canonical_revision(pod: Mapping[str, Any]) -> str:
    labels = pod_labels(pod)
    return next((labels[key] for key in CANONICAL_REVISION_LABELS if labels.get(key)), "latest")


def mesh_id(mesh_spec: Mapping[str, Any]) -> str:
    """Istio's `defaultConfig.meshId`, else the trust domain, else `cluster.local`."""
    configured = _mapping(mesh_spec.get("defaultConfig")).get("meshId") or mesh_spec.get("trustDomain")
    return str(configured) if configured else DEFAULT_MESH_ID


def node_identity(pod: Mapping[str, Any], mesh_spec: Mapping[str, Any]) -> NodeIdentity:
    metadata = _mapping(pod.get("metadata"))
    spec = _mapping(pod.get("spec"))
    return NodeIdentity(
        pod_name=_pod_name(pod),
        namespace=str(metadata.get("namespace") or "default"),
        # Empty until the pod is scheduled (at admission); the sidecar takes its IP from the downward API then.
        pod_ip=str(_mapping(pod.get("status")).get("podIP") or "127.0.0.1"),
        canonical_service=canonical_service(pod),
        canonical_revision=canonical_revision(pod),
        service_account=str(spec.get("serviceAccountName") or "default"),
        mesh_id=mesh_id(mesh_spec),
        labels=pod_labels(pod),
    )


def inbound_ports(pod: Mapping[str, Any]) -> tuple[InboundPort, ...]:
    """The application containers' TCP ports, in declaration order, each once."""
    ports: list[InboundPort] = []
    seen: set[int] = set()
    for container in _list(_mapping(pod.get("spec")).get("containers")):
        for entry in _list(_mapping(container).get("ports")):
            entry = _mapping(entry)
            port = entry.get("containerPort")
            if (not isinstance(port, int) or isinstance(port, bool) or port in seen or port in PROXY_PORTS
                    or str(entry.get("protocol") or "TCP") != "TCP"):
                continue
            seen.add(port)
            ports.append(InboundPort(port=port, app_port=port))
    return tuple(ports)


def proxy_config_for_pod(pod: Mapping[str, Any], compiled: CompiledTracing, mesh_spec: Mapping[str, Any],
                         discovery_address: str | None, version: str,
                         services: tuple[ServiceEntry, ...] = ()) -> ProxyConfig:
    """The full config of the pod's proxy: its identity, its app's ports, the mesh's services and the compiled
    tracing."""
    return ProxyConfig(
        node=node_identity(pod, mesh_spec),
        version=version,
        inbound=InboundConfig(ports=inbound_ports(pod)),
        outbound=OutboundConfig(services=services),
        tracing=compiled.tracing,
        providers=compiled.providers,
        discovery=DiscoveryConfig(address=discovery_address) if discovery_address else None,
    )
