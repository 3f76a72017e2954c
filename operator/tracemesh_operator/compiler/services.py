"""Services + EndpointSlices -> the mesh's service registry, the endpoints istiod pushes over EDS. Pure.

Every sidecar gets every entry (Istio's default, without a Sidecar resource narrowing it), and
balances each request to a Service's ClusterIP over the entry's endpoints itself: kube-proxy
would pick an endpoint once per connection, and the sidecar keeps its connections alive.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from tracemesh_sidecar.config import ServiceEntry, ServiceSubset
from tracemesh_sidecar.config.protocol import UNSUPPORTED, port_protocol

Body = Mapping[str, Any]
# The label that ties an EndpointSlice to its Service (set by the endpointslice controller).
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_IP_ADDRESS_TYPES = frozenset({"IPv4", "IPv6"})


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _ip(value: object) -> str | None:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:  # "None" (headless), "", or anything else that is no address
        return None


def _port(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536 else None


def _protocol(service_port: Body, port: int) -> str:
    """The Service port's protocol as Istio selects it (its name, appProtocol and protocol); "": none declared,
    the sidecar sniffs it."""
    app_protocol = service_port.get("appProtocol")
    protocol = port_protocol(str(service_port.get("name") or ""),
                             None if app_protocol is None else str(app_protocol),
                             str(service_port.get("protocol") or "TCP"), port=port)
    return "" if protocol == UNSUPPORTED else protocol


def slice_key(namespace: str, service: str) -> str:
    """How EndpointSlices are grouped: by the `namespace/name` of the Service they belong to."""
    return f"{namespace}/{service}"


# A DestinationRule's subsets of one host: (name, labels) in the order written.
Subsets = tuple[tuple[str, Mapping[str, str]], ...]


def service_registry(services: Iterable[Body], slices: Mapping[str, Iterable[Body]],
                     cluster_domain: str = "cluster.local", subsets: Mapping[str, Subsets] | None = None,
                     pod_labels: Mapping[str, Mapping[str, str]] | None = None) -> tuple[ServiceEntry, ...]:
    """One entry per TCP port of each Service with a ClusterIP, sorted, so equal clusters give equal registries.

    `subsets` (by host FQDN) become each entry's subsets: the endpoints whose pod carries all of a subset's labels,
    as istiod selects subset endpoints. `pod_labels` holds the pods' labels by `namespace/name` (an endpoint's
    targetRef) and by pod IP (for an endpoint without one).
    """
    entries = []
    for service in services:
        metadata, spec = _mapping(service.get("metadata")), _mapping(service.get("spec"))
        name, namespace = str(metadata.get("name") or ""), str(metadata.get("namespace") or "")
        cluster_ips = [ip for ip in map(_ip, _list(spec.get("clusterIPs")) or [spec.get("clusterIP")]) if ip]
        if not name or not namespace or not cluster_ips:
            continue  # headless, ExternalName, or not allocated yet: kube-proxy does not route it either
        own_slices = list(slices.get(slice_key(namespace, name), ()))
        for service_port in map(_mapping, _list(spec.get("ports"))):
            port = _port(service_port.get("port"))
            if port is None or str(service_port.get("protocol") or "TCP") != "TCP":
                continue
            host = f"{name}.{namespace}.svc.{cluster_domain}"
            endpoints = _endpoints(service_port, own_slices)
            entries.append(ServiceEntry(
                host=host, port=port, endpoints=tuple(sorted(endpoints)), addresses=tuple(cluster_ips),
                protocol=_protocol(service_port, port),
                subsets=tuple(ServiceSubset(subset, tuple(sorted(
                    endpoint for endpoint, pod in endpoints.items()
                    if all((pod_labels or {}).get(pod, {}).get(key) == value for key, value in labels.items()))))
                    for subset, labels in (subsets or {}).get(host, ()))))
    return tuple(sorted(entries, key=lambda entry: (entry.host, entry.port)))


def _endpoints(service_port: Body, slices: list[Body]) -> dict[str, str]:
    """The ready endpoints of one service port, `ip:port` (`[ip]:port` for IPv6), each with its pod's
    `namespace/name` (its targetRef), or its address when it has none."""
    found: dict[str, str] = {}
    for endpoint_slice in slices:
        if endpoint_slice.get("addressType") not in _IP_ADDRESS_TYPES:
            continue  # FQDN slices name hosts, not addresses the proxy can connect to
        target = _slice_port(service_port, [_mapping(p) for p in _list(endpoint_slice.get("ports"))])
        if target is None:
            continue
        for endpoint in map(_mapping, _list(endpoint_slice.get("endpoints"))):
            # `ready` unset means ready (the API's own reading); the addresses are fungible: the first serves.
            addresses = _list(endpoint.get("addresses"))
            address = _ip(addresses[0]) if addresses else None
            if address is None or _mapping(endpoint.get("conditions")).get("ready") is False:
                continue
            pod = _mapping(endpoint.get("targetRef"))
            pod_key = f"{pod.get('namespace')}/{pod.get('name')}" if pod.get("kind") == "Pod" else address
            found[f"[{address}]:{target}" if ":" in address else f"{address}:{target}"] = pod_key
    return found


def _slice_port(service_port: Body, slice_ports: list[Mapping[str, Any]]) -> int | None:
    """The slice's port for this service port: the one of the same name (the controller copies it),
    else the one equal to a numeric targetPort."""
    name = service_port.get("name") or ""
    for slice_port in slice_ports:
        if (slice_port.get("name") or "") == name and str(slice_port.get("protocol") or "TCP") == "TCP":
            return _port(slice_port.get("port"))
    target = _port(service_port.get("targetPort"))
    if target is not None and any(_port(p.get("port")) == target for p in slice_ports):
        return target
    return None


def inbound_services(services: Iterable[Body], pod_labels: Mapping[str, str], named_ports: Mapping[str, int],
                     cluster_domain: str = "cluster.local") -> dict[int, tuple[str, int, str]]:
    """Workload port -> (Service FQDN, Service port, its protocol) of the Service that names the workload's inbound
    chain there (the protocol as the registry's: "" when none is declared).

    `services` are those of the pod's namespace; a Service selects the pod by its selector (ExternalName and
    selector-less Services do not). As Istio (pilot/pkg/model/context.go SetServiceTargets, then
    listener_inbound.go getFilterChainsByServicePort): the Services are taken oldest first (creation time,
    then hostname), and the first one whose port targets a workload port names it; later ones are skipped.
    A named targetPort is the container port of that name (`named_ports`); no targetPort means the port.
    """
    selecting = []
    for service in services:
        metadata, spec = _mapping(service.get("metadata")), _mapping(service.get("spec"))
        selector = _mapping(spec.get("selector"))
        name, namespace = str(metadata.get("name") or ""), str(metadata.get("namespace") or "")
        if (not name or not selector or spec.get("type") == "ExternalName"
                or any(pod_labels.get(str(key)) != str(value) for key, value in selector.items())):
            continue
        host = f"{name}.{namespace}.svc.{cluster_domain}"
        selecting.append((str(metadata.get("creationTimestamp") or ""), host, spec))
    targets: dict[int, tuple[str, int, str]] = {}
    for _, host, spec in sorted(selecting, key=lambda found: (found[0], found[1])):
        for service_port in map(_mapping, _list(spec.get("ports"))):
            port = _port(service_port.get("port"))
            if port is None or str(service_port.get("protocol") or "TCP") != "TCP":
                continue
            target = service_port.get("targetPort", port)
            workload_port = named_ports.get(target) if isinstance(target, str) else _port(target)
            if workload_port is not None:
                targets.setdefault(workload_port, (host, port, _protocol(service_port, port)))
    return targets
