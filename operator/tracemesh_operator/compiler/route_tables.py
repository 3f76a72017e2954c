"""Gateways and routing rules (VirtualServices, HTTPRoutes) -> one proxy's route tables. Pure.

A gateway pod gets, per port its selecting Gateways' HTTP servers resolve to, a listener and the route
table `http.<port>` (pilot/pkg/model/gateway.go resolvePorts and gatewayRDSRouteName): a server port that
is a port of a Service selecting the pod binds that port's targetPort (80 -> 8080), any other binds as
written. A sidecar gets the table `outbound` from the rules bound to the mesh. As route.go translates a
VirtualService, each match of a rule is one route, with its own decorator (GetRouteOperation): the
SERVER span's name at a gateway, `<host>:<port><path>` for a single destination, else
`<rules name>:<listener port><path>`, where the path is the exact path, the prefix with `*`, the regex,
or `/*`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from tracemesh_operator.compiler.model import Problem
from tracemesh_operator.compiler.networking import MESH_GATEWAY, Destination, GatewayRules, HttpRule, RoutingRules
from tracemesh_sidecar.config import (
    GatewayConfig,
    GatewayListener,
    Route,
    RouteMatch,
    RouteTable,
    ServiceEntry,
    VirtualHost,
    WeightedDestination,
)
from tracemesh_sidecar.config.routes import OUTBOUND_ROUTE_TABLE


@dataclass(frozen=True, slots=True)
class CompiledRoutes:
    gateway: GatewayConfig | None  # a router's listeners; None for a sidecar
    route_tables: tuple[RouteTable, ...]


def route_table_name(port: int) -> str:
    return f"http.{port}"


def _service_ports(registry: Iterable[ServiceEntry]) -> dict[str, list[int]]:
    ports: dict[str, list[int]] = {}
    for entry in registry:
        ports.setdefault(entry.host, []).append(entry.port)
    return ports


def destination_port(destination: Destination, service_ports: Mapping[str, Sequence[int]]) -> int | None:
    """The written port, else the Service's only port (Istio's default when the port is left out)."""
    if destination.port is not None:
        return destination.port
    ports = service_ports.get(destination.host, ())
    return ports[0] if len(ports) == 1 else None


def unresolved_destinations(rules: RoutingRules, registry: Iterable[ServiceEntry]) -> tuple[Problem, ...]:
    """Destinations no route can be built for: no port written, and the host is not a Service of one port."""
    ports = _service_ports(registry)
    return tuple(
        Problem(rules.resource, f"spec.http[{index}].route[{position}].destination.port", "UnresolvedDestination",
                f"is not set and {destination.host} is not a Service with a single port, so the rule is left out",
                "write destination.port.number")
        for index, rule in enumerate(rules.http) for position, destination in enumerate(rule.destinations)
        if destination_port(destination, ports) is None)


def _weights(destinations: Sequence[Destination]) -> list[int]:
    """Weights summing to 100: Envoy's weights are relative, the document's are percentages (largest remainder)."""
    if len(destinations) == 1:
        return [100]
    written = [destination.weight or 0 for destination in destinations]
    total = sum(written) or len(written)
    written = written if sum(written) else [1] * len(written)
    exact = [weight * 100 / total for weight in written]
    result = [int(share) for share in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - result[i], reverse=True)
    for index in by_remainder[: 100 - sum(result)]:
        result[index] += 1
    return result


def _path(match: RouteMatch | None) -> str:
    uri = match.uri if match is not None else None
    if uri is None:
        return "/*"
    return f"{uri.value}*" if uri.kind == "prefix" else uri.value


def _routes(rules: RoutingRules, listen_port: int, service_ports: Mapping[str, Sequence[int]]) -> list[Route]:
    routes = []
    for rule in rules.http:
        ports = [destination_port(destination, service_ports) for destination in rule.destinations]
        if None in ports:
            continue  # reported by unresolved_destinations
        destinations = tuple(
            WeightedDestination(host=destination.host, port=port, subset=destination.subset, weight=weight)
            for destination, port, weight in zip(rule.destinations, ports, _weights(rule.destinations), strict=True)
            if port is not None)
        matches: Sequence[RouteMatch | None] = rule.matches or (None,)
        for match, path in zip(matches, rule.decorator_paths or [_path(match) for match in matches], strict=True):
            if len(destinations) == 1:
                decorator = f"{destinations[0].host}:{destinations[0].port}{path}"
            else:
                decorator = f"{rules.name}:{listen_port}{path}"
            routes.append(_route(rule, match, decorator, destinations))
    return routes


def _route(rule: HttpRule, match: RouteMatch | None, decorator: str,
           destinations: tuple[WeightedDestination, ...]) -> Route:
    return Route(name=rule.name, match=(match,) if match is not None else (), decorator=decorator,
                 destinations=destinations, rewrite_uri=rule.rewrite_uri, timeout_s=rule.timeout_s,
                 retries=rule.retries)


# -- gateways ----------------------------------------------------------------------------------------------


def _host_match(server_host: str, rules_host: str) -> str | None:
    """The domain a server host and a rules host have in common, the narrower of the two."""
    if server_host == "*" or server_host == rules_host:
        return rules_host
    if rules_host == "*":
        return server_host
    if server_host.startswith("*.") and rules_host.endswith(server_host[1:]):
        return rules_host
    if rules_host.startswith("*.") and server_host.endswith(rules_host[1:]):
        return server_host
    return None


def _server_domains(gateway: GatewayRules, server_hosts: Iterable[str], rules: RoutingRules) -> list[str]:
    """The rules' hosts a server admits; a server host `ns/host` admits only rules of namespace ns (`.`: the
    Gateway's own, `*`: any)."""
    domains = []
    for written in server_hosts:
        namespace, _, host = written.rpartition("/")
        if namespace == ".":
            namespace = gateway.namespace
        if namespace not in ("", "*", rules.namespace):
            continue
        for rules_host in rules.hosts:
            found = _host_match(host, rules_host)
            if found is not None and found not in domains:
                domains.append(found)
    return domains


def compile_gateway_routes(namespace: str, labels: Mapping[str, str], service_target_ports: Mapping[int, int],
                           gateways: Iterable[GatewayRules], routing: Iterable[RoutingRules],
                           registry: Sequence[ServiceEntry]) -> CompiledRoutes:
    """A gateway pod's listeners and route tables. `service_target_ports`: the port -> target port of the
    Services selecting the pod (oldest Service first); `routing` oldest first."""
    selecting = [gateway for gateway in gateways if gateway.selects(namespace, labels)]
    service_ports = _service_ports(registry)
    listeners: dict[int, GatewayListener] = {}
    hosts: dict[int, dict[str, list[str]]] = {}  # bound port -> gateway key -> server hosts
    for gateway in selecting:
        for server in gateway.servers:
            bound = service_target_ports.get(server.port, server.port)
            listeners.setdefault(bound, GatewayListener(f"0.0.0.0:{bound}", server.port, route_table_name(bound)))
            hosts.setdefault(bound, {}).setdefault(gateway.key, []).extend(server.hosts)
    by_key = {gateway.key: gateway for gateway in selecting}
    ordered = list(routing)
    tables = []
    for bound in sorted(listeners):
        virtual_hosts: list[VirtualHost] = []
        for rules in ordered:
            domains: list[str] = []
            for key in rules.gateways:
                if key in hosts[bound]:
                    domains += [d for d in _server_domains(by_key[key], hosts[bound][key], rules) if d not in domains]
            routes = _routes(rules, bound, service_ports) if domains else []
            same = next((i for i, host in enumerate(virtual_hosts) if host.domains == tuple(domains)), None)
            if routes and same is not None:
                # Istio merges the routes of every VirtualService for one host on a gateway, oldest first.
                virtual_hosts[same] = replace(virtual_hosts[same], routes=virtual_hosts[same].routes + tuple(routes))
            elif routes:
                virtual_hosts.append(VirtualHost(f"{rules.namespace}/{rules.name}", tuple(domains), tuple(routes)))
        tables.append(RouteTable(route_table_name(bound), tuple(virtual_hosts)))
    return CompiledRoutes(GatewayConfig(tuple(listeners[port] for port in sorted(listeners))), tuple(tables))


# -- sidecars ----------------------------------------------------------------------------------------------


def compile_sidecar_routes(routing: Iterable[RoutingRules], registry: Sequence[ServiceEntry]) -> CompiledRoutes:
    """The `outbound` table: one virtual host per rules bound to the mesh, for the Services they name."""
    service_ports = _service_ports(registry)
    virtual_hosts = []
    for rules in routing:
        if MESH_GATEWAY not in rules.gateways:
            continue
        host_ports = [port for host in rules.hosts for port in service_ports.get(host, ())]
        routes = _routes(rules, host_ports[0] if host_ports else 0, service_ports)
        if routes:
            virtual_hosts.append(VirtualHost(f"{rules.namespace}/{rules.name}", rules.hosts, tuple(routes)))
    tables = (RouteTable(OUTBOUND_ROUTE_TABLE, tuple(virtual_hosts)),) if virtual_hosts else ()
    return CompiledRoutes(None, tables)
