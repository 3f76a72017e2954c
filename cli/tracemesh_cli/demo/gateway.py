"""The demo's ingress gateway: Istio's `istio-ingressgateway` in router mode, routed by Bookinfo's own
gateway file compiled as the operator compiles it for a gateway pod (pure: documents in, config out).

Like `kubectl apply -f samples/bookinfo/networking/bookinfo-gateway.yaml`, resources without a namespace
land in `default`; the gateway pod is in `istio-system` with Istio's labels, behind a Service mapping
port 80 to 8080 and 443 to 8443 (manifests/charts/gateways/istio-ingress). Its listener binds loopback.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tracemesh_operator.compiler.model import Problem
from tracemesh_operator.compiler.networking import read_gateway, read_virtual_service
from tracemesh_operator.compiler.route_tables import compile_gateway_routes
from tracemesh_sidecar.config import GatewayConfig, RouteTable, ServiceEntry

GATEWAY_NAMESPACE = "istio-system"
GATEWAY_SERVICE = "istio-ingressgateway"
GATEWAY_LABELS = {"app": "istio-ingressgateway", "istio": "ingressgateway"}
SERVICE_TARGET_PORTS = {80: 8080, 443: 8443}  # the gateway Service's http2 and https ports
APPLY_NAMESPACE = "default"


class GatewayRoutesError(ValueError):
    """The gateway file cannot route the demo's requests; the message says what to change."""


@dataclass(frozen=True, slots=True)
class GatewayRoutes:
    gateway: GatewayConfig
    route_tables: tuple[RouteTable, ...]


def _applied(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The document as the API server stores it after `kubectl apply` into the default namespace."""
    result = copy.deepcopy(dict(doc))
    metadata = result.setdefault("metadata", {})
    metadata.setdefault("namespace", APPLY_NAMESPACE)
    return result


def gateway_routes(networking: Sequence[Mapping[str, Any]], registry: Sequence[ServiceEntry],
                   listen: str) -> GatewayRoutes:
    """The gateway pod's listeners and route tables; the listener on target port 8080 binds `listen`
    (`host:port`), any other binds loopback on its own port."""
    read: dict[str, list[Any]] = {"Gateway": [], "VirtualService": []}
    for doc in map(_applied, networking):
        kind = str(doc.get("kind"))
        if kind in read:
            read[kind].append(read_gateway(doc) if kind == "Gateway" else read_virtual_service(doc))
    problems = [item for items in read.values() for item in items if isinstance(item, Problem)]
    gateways = [item for item in read["Gateway"] if not isinstance(item, Problem)]
    routing = [item for item in read["VirtualService"] if not isinstance(item, Problem)]
    if problems:
        raise GatewayRoutesError("the gateway routes have problems:\n" +
                                 "\n".join(f"  {problem.message}" for problem in problems))
    compiled = compile_gateway_routes(GATEWAY_NAMESPACE, GATEWAY_LABELS, SERVICE_TARGET_PORTS, gateways, routing,
                                      registry)
    if compiled.gateway is None or not compiled.gateway.listeners:
        raise GatewayRoutesError(f"no Gateway selects the ingress gateway's labels {GATEWAY_LABELS}; "
                                 "give a Gateway with selector istio: ingressgateway")
    host = listen.rpartition(":")[0]
    listeners = tuple(replace(listener, address=listen if listener.address.endswith(":8080")
                              else f"{host}:{listener.address.rpartition(':')[2]}")
                      for listener in compiled.gateway.listeners)
    if not any(listener.address == listen for listener in listeners):
        raise GatewayRoutesError("no Gateway server binds the ingress gateway's port 8080 (Service port 80); "
                                 "give a Gateway server on port 80 or 8080")
    return GatewayRoutes(GatewayConfig(listeners), compiled.route_tables)
