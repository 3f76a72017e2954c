"""The status istiod writes on the Gateway API's objects, with its words (pilot/pkg/config/kube/gateway/conversion.go
reportGatewayStatus, gatewaycommon/context.go ResolveGatewayInstances and conversion.go SetProgrammedCondition; the
messages as in its testdata/*.status.yaml.golden). Pure: the shell writes what differs from what is there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any

from tracemesh_operator.compiler.gateway_api import CONTROLLER_NAME, GATEWAY_GROUP, parent_gateways
from tracemesh_operator.compiler.networking import CLUSTER_DOMAIN, RoutingRules
from tracemesh_operator.gateway_api_objects import workload_name
from tracemesh_sidecar.config import ServiceEntry

Body = Mapping[str, Any]
# (type, status, reason, message)
ConditionSpec = tuple[str, bool, str, str]
_SUPPORTED_KINDS = [{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}, {"group": GATEWAY_GROUP, "kind": "GRPCRoute"}]


def conditions(body: Body, wanted: Iterable[ConditionSpec], now: str,
               previous: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Gateway API conditions; lastTransitionTime moves only when a condition's status does."""
    before = {str(entry.get("type")): entry for entry in (previous if previous is not None else _status(
        body).get("conditions") or ()) if isinstance(entry, Mapping)}
    generation = (body.get("metadata") or {}).get("generation")
    result = []
    for kind, status, reason, message in wanted:
        text = "True" if status else "False"
        old = before.get(kind)
        entry: dict[str, Any] = {"type": kind, "status": text, "reason": reason, "message": message,
                                 "lastTransitionTime": str(old["lastTransitionTime"]) if old and old.get(
                                     "status") == text and old.get("lastTransitionTime") else now}
        if generation is not None:
            entry["observedGeneration"] = generation
        result.append(entry)
    return result


def _status(body: Body) -> Mapping[str, Any]:
    status = body.get("status")
    return status if isinstance(status, Mapping) else {}


def human_join(items: Sequence[str]) -> str:
    """gatewaycommon HumanReadableJoin: `a`, `a and b`, `a, b, and c`."""
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


def gateway_class_status(body: Body, now: str) -> dict[str, Any]:
    return {"conditions": conditions(body, [("Accepted", True, "Accepted", "Handled by Istio controller")], now)}


def gateway_status(gateway: Body, service: Body | None, registry: Sequence[ServiceEntry], attached: Mapping[str, int],
                   now: str) -> dict[str, Any]:
    """A Gateway's status: addresses, Accepted/Programmed/ResolvedRefs, and one entry per listener.

    `service` is its `<name>-istio` Service (None until it exists), `attached` the number of routes per listener.
    """
    metadata = gateway["metadata"]
    hostname = f"{workload_name(gateway)}.{metadata['namespace']}.svc.{CLUSTER_DOMAIN}"
    listeners = [listener for listener in (gateway.get("spec") or {}).get("listeners") or ()
                 if isinstance(listener, Mapping)]
    internal, internal_ips, external, warnings = [], [], [], []
    if service is None:
        warnings.append(f'hostname "{hostname}" not found')
    else:
        spec, ingress = service.get("spec") or {}, ((_status(service).get("loadBalancer") or {}).get("ingress") or [])
        external = [str(entry.get("ip") or entry.get("hostname")) for entry in ingress if isinstance(entry, Mapping)]
        endpoints = {entry.port: entry.endpoints for entry in registry if entry.host == hostname}
        for port in sorted({int(listener.get("port") or 0) for listener in listeners}):
            if endpoints.get(port):
                internal.append(f"{hostname}:{port}")
                internal_ips = [str(ip) for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip]
                if not external and spec.get("type") == "LoadBalancer" and not any("pending" in w for w in warnings):
                    warnings.append(f'address pending for hostname "{hostname}"')
            elif not any(endpoints.values()) and f'no instances found for hostname "{hostname}"' not in warnings:
                warnings.append(f'no instances found for hostname "{hostname}"')
    programmed: ConditionSpec = ("Programmed", True, "Programmed",
                                 f"Resource programmed, assigned to service(s) {human_join(internal)}"
                                 if internal else "Resource programmed")
    if warnings:
        message = (f"Assigned to service(s) {human_join(internal)}, but failed to assign to all requested "
                   f"addresses: {'; '.join(warnings)}" if internal
                   else f"Failed to assign to any requested addresses: {'; '.join(warnings)}")
        programmed = ("Programmed", False, "AddressNotAssigned", message)
    addresses = external or [*internal_ips, *([] if any("pending" in w for w in warnings) or not internal
                                              else [hostname])]
    previous_listeners = {str(entry.get("name")): entry for entry in _status(gateway).get("listeners") or ()
                          if isinstance(entry, Mapping)}
    return {
        "addresses": [{"type": "IPAddress" if _is_ip(address) else "Hostname", "value": address}
                      for address in addresses],
        "conditions": conditions(gateway, [("Accepted", True, "Accepted", "Resource accepted"), programmed,
                                           ("ResolvedRefs", True, "ResolvedRefs", "All references resolved")], now),
        "listeners": [_listener_status(gateway, listener, attached.get(str(listener.get("name")), 0), now,
                                       previous_listeners.get(str(listener.get("name"))))
                      for listener in listeners],
    }


def _listener_status(gateway: Body, listener: Mapping[str, Any], attached: int, now: str,
                     previous: Mapping[str, Any] | None) -> dict[str, Any]:
    served = listener.get("protocol") == "HTTP"
    wanted: list[ConditionSpec] = [
        ("Accepted", served, "Accepted" if served else "UnsupportedProtocol",
         "No errors found" if served else f"protocol {listener.get('protocol')} is not supported by tracemesh"),
        ("Conflicted", False, "NoConflicts", "No errors found"),
        ("Programmed", served, "Programmed" if served else "Invalid", "No errors found" if served else
         "the listener is not served"),
        ("ResolvedRefs", True, "ResolvedRefs", "No errors found"),
    ]
    return {"name": listener.get("name"), "attachedRoutes": attached,
            "supportedKinds": _SUPPORTED_KINDS if served else [],
            "conditions": conditions(gateway, wanted, now, (previous or {}).get("conditions") or [])}


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def route_status(route: Body, rules: RoutingRules | None, gateways: Mapping[str, Body],
                 service_hosts: Set[str], now: str) -> dict[str, Any]:
    """An HTTPRoute's `status.parents`: Accepted by each Gateway of class istio it names, ResolvedRefs when every
    backend is a Service. Entries other controllers wrote are kept."""
    namespace = (route.get("metadata") or {}).get("namespace")
    previous = [entry for entry in _status(route).get("parents") or () if isinstance(entry, Mapping)]
    kept = [dict(entry) for entry in previous if entry.get("controllerName") != CONTROLLER_NAME]
    ours = {_parent_key(entry.get("parentRef") or {}, namespace): entry for entry in previous
            if entry.get("controllerName") == CONTROLLER_NAME}
    missing = sorted({destination.host.split(".")[0] for rule in (rules.http if rules else ())
                      for destination in rule.destinations if destination.host not in service_hosts})
    for ref, key in parent_gateways(route):
        gateway = gateways.get(key)
        if gateway is None:
            accepted: ConditionSpec = ("Accepted", False, "NoMatchingParent", "parent gateway not found")
        elif rules is None:
            accepted = ("Accepted", False, "UnsupportedValue", "the route is invalid")
        elif key.partition("/")[0] != namespace and not _allows_all(gateway):
            accepted = ("Accepted", False, "NotAllowedByListeners", "no listener allows routes of this namespace")
        else:
            accepted = ("Accepted", True, "Accepted", "Route was valid")
        resolved: ConditionSpec = ("ResolvedRefs", True, "ResolvedRefs", "All references resolved")
        if missing:
            resolved = ("ResolvedRefs", False, "BackendNotFound", f"backend(s) not found: {', '.join(missing)}")
        entry = ours.get(key, {})
        kept.append({"parentRef": dict(ref), "controllerName": CONTROLLER_NAME,
                     "conditions": conditions(route, [accepted, resolved], now, entry.get("conditions") or [])})
    return {"parents": kept}


def _parent_key(ref: Mapping[str, Any], namespace: object) -> str:
    return f"{ref.get('namespace') or namespace}/{ref.get('name')}"


def _allows_all(gateway: Body) -> bool:
    return any(((listener.get("allowedRoutes") or {}).get("namespaces") or {}).get("from") == "All"
               for listener in (gateway.get("spec") or {}).get("listeners") or () if isinstance(listener, Mapping))


def attached_routes(gateway_key: str, gateway: Body, routes: Iterable[Body]) -> dict[str, int]:
    """Routes attached per listener: those naming the Gateway (and the listener, if they name a section)."""
    counts = {str(listener.get("name")): 0 for listener in (gateway.get("spec") or {}).get("listeners") or ()
              if isinstance(listener, Mapping)}
    gateway_namespace = gateway_key.partition("/")[0]
    for route in routes:
        same = (route.get("metadata") or {}).get("namespace") == gateway_namespace
        for ref, key in parent_gateways(route):
            if key != gateway_key or not (same or _allows_all(gateway)):
                continue
            for name in counts:
                if ref.get("sectionName") in (None, name):
                    counts[name] += 1
    return counts


def without_times(status: Any) -> Any:
    """A status with every lastTransitionTime left out: what a status is compared by."""
    if isinstance(status, Mapping):
        return {key: without_times(value) for key, value in status.items() if key != "lastTransitionTime"}
    if isinstance(status, list):
        return [without_times(item) for item in status]
    return status
