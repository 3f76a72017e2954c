"""Route tables of the proxy config document: Envoy's RouteConfiguration -> VirtualHost -> Route.

A gateway (`proxyType: router`) serves each of its listeners from one route table; a sidecar
consults the table named `outbound` once it knows the destination service (mesh VirtualServices).
The operator compiles Istio's Gateway/VirtualService/DestinationRule and the Gateway API's
HTTPRoute into these shapes; the proxy only matches and forwards.

    proxyType: router
    gateway:
      listeners: [{address: "0.0.0.0:8080", port: 80, routeTable: http.80}]
    routeTables:
    - name: http.80
      virtualHosts:
      - name: default/bookinfo
        domains: ["*"]
        routes:
        - match: [{uri: {exact: /productpage}}]
          decorator: productpage.default.svc.cluster.local:9080/productpage
          destinations: [{host: productpage.default.svc.cluster.local, port: 9080}]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from tracemesh_sidecar.config.fields import ConfigError, Fields, check_host_port, format_duration

StringMatchKind = Literal["exact", "prefix", "regex", "present"]
STRING_MATCH_KINDS: Final[tuple[StringMatchKind, ...]] = ("exact", "prefix", "regex", "present")
# The sidecar's table for mesh VirtualServices (gateways: [mesh] or none).
OUTBOUND_ROUTE_TABLE: Final = "outbound"
# Envoy's x-envoy-retry-on conditions (router/retry_state_impl.cc) plus the gRPC ones
# (x-envoy-retry-grpc-on); a number in retryOn is a retriable status code, as Istio's retry.go reads it.
RETRY_ON_CONDITIONS: Final = (
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
    "retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
    "http3-post-connect-failure", "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
)


@dataclass(frozen=True, slots=True)
class StringMatch:
    """Istio's StringMatch: `exact`, `prefix`, `regex` (a full match), or a header's mere presence."""

    kind: StringMatchKind
    value: str = ""

    def matches(self, text: str | None) -> bool:
        if text is None:
            return False
        if self.kind == "exact":
            return text == self.value
        if self.kind == "prefix":
            return text.startswith(self.value)
        if self.kind == "regex":
            return re.fullmatch(self.value, text) is not None
        return True


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """One alternative of a route's `match` list: every condition set must hold."""

    uri: StringMatch | None = None
    headers: tuple[tuple[str, StringMatch], ...] = ()  # header names lower-case
    method: StringMatch | None = None


@dataclass(frozen=True, slots=True)
class WeightedDestination:
    host: str  # the Service's FQDN, a key into outbound.services
    port: int
    subset: str | None = None  # a DestinationRule subset name: ServiceEntry.subsets
    weight: int = 100


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int  # retries after the first try (Envoy's num_retries)
    per_try_timeout_s: float | None = None
    retry_on: tuple[str, ...] = ()  # RETRY_ON_CONDITIONS and retriable status codes ("503")

    @property
    def conditions(self) -> frozenset[str]:
        return frozenset(item for item in self.retry_on if not item.isdigit())

    @property
    def retriable_status_codes(self) -> frozenset[int]:
        return frozenset(int(item) for item in self.retry_on if item.isdigit())


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    match: tuple[RouteMatch, ...]  # alternatives (OR); empty matches every request
    decorator: str | None  # the SERVER span's name at a gateway (Envoy's route decorator operation)
    destinations: tuple[WeightedDestination, ...]
    rewrite_uri: str | None = None
    timeout_s: float | None = None
    retries: RetryPolicy | None = None


@dataclass(frozen=True, slots=True)
class VirtualHost:
    name: str  # `<namespace>/<VirtualService or HTTPRoute name>`
    domains: tuple[str, ...]  # exact, "*", "*.suffix", "prefix.*"; with or without :port
    routes: tuple[Route, ...]


@dataclass(frozen=True, slots=True)
class RouteTable:
    name: str
    virtual_hosts: tuple[VirtualHost, ...]


@dataclass(frozen=True, slots=True)
class GatewayListener:
    address: str  # `host:port` the gateway binds, e.g. 0.0.0.0:8080
    port: int  # the Gateway server's port (80), which Host headers may carry
    route_table: str


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    listeners: tuple[GatewayListener, ...]


@dataclass(frozen=True, slots=True)
class ServiceSubset:
    """A DestinationRule subset: the service's endpoints whose pods carry the subset's labels."""

    name: str
    endpoints: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Reading


def parse_string_match(fields: Fields) -> StringMatch:
    kinds = [kind for kind in STRING_MATCH_KINDS if fields.has(kind)]
    if len(kinds) != 1:
        raise ConfigError(fields.path, f"sets {len(kinds)} of {', '.join(STRING_MATCH_KINDS)}",
                          "set exactly one of them")
    kind = kinds[0]
    if kind == "present":
        if fields.boolean("present") is not True:
            raise ConfigError(f"{fields.path}.present", "is false", "leave the match out, or set present: true")
        result = StringMatch("present")
    else:
        value = fields.string(kind, allow_empty=True)
        if kind == "regex":
            try:
                re.compile(value)
            except re.error as error:
                raise ConfigError(f"{fields.path}.regex", f"is not a valid regular expression ({error})",
                                  "write an RE2 expression, e.g. ^/api/v[0-9]+/.*") from None
        result = StringMatch(kind, value)
    fields.done()
    return result


def _parse_match(fields: Fields) -> RouteMatch:
    headers = fields.mapping("headers")
    result = RouteMatch(
        uri=parse_string_match(fields.mapping("uri")) if fields.has("uri") else None,
        headers=tuple((name.lower(), parse_string_match(headers.mapping(name))) for name in sorted(headers.keys())),
        method=parse_string_match(fields.mapping("method")) if fields.has("method") else None,
    )
    fields.done()
    return result


def _parse_destination(fields: Fields, default_weight: int) -> WeightedDestination:
    result = WeightedDestination(
        host=fields.string("host"),
        port=fields.port("port"),
        subset=fields.string("subset", None),
        weight=fields.integer("weight", default_weight, minimum=0, maximum=100),
    )
    fields.done()
    return result


def _parse_retries(fields: Fields) -> RetryPolicy:
    text = fields.string("retryOn", "", allow_empty=True)
    retry_on = tuple(item.strip() for item in text.split(",") if item.strip())
    for item in retry_on:
        if not item.isdigit() and item not in RETRY_ON_CONDITIONS:
            raise ConfigError(f"{fields.path}.retryOn", f"names {item!r}, which is not a retry condition",
                              f"use status codes or some of: {', '.join(RETRY_ON_CONDITIONS)}")
    result = RetryPolicy(attempts=fields.integer("attempts", minimum=0),
                         per_try_timeout_s=fields.duration("perTryTimeout", None), retry_on=retry_on)
    fields.done()
    return result


def _parse_route(fields: Fields) -> Route:
    items = list(fields.items("destinations"))
    if not items:
        raise ConfigError(f"{fields.path}.destinations", "is empty", "give the route at least one destination")
    destinations = tuple(_parse_destination(Fields(item, path), 100 if len(items) == 1 else 0) for path, item in items)
    if len(destinations) > 1 and sum(d.weight for d in destinations) != 100:
        raise ConfigError(f"{fields.path}.destinations", f"weights sum to {sum(d.weight for d in destinations)}",
                          "make the weights of the destinations sum to 100")
    result = Route(
        name=fields.string("name", "", allow_empty=True),
        match=tuple(_parse_match(Fields(item, path)) for path, item in fields.items("match")),
        decorator=fields.string("decorator", None),
        destinations=destinations,
        rewrite_uri=fields.string("rewriteUri", None),
        timeout_s=fields.duration("timeout", None),
        retries=_parse_retries(fields.mapping("retries")) if fields.has("retries") else None,
    )
    fields.done()
    return result


def _parse_virtual_host(fields: Fields) -> VirtualHost:
    domains = []
    for path, domain in fields.items("domains"):
        if not isinstance(domain, str) or not domain:
            raise ConfigError(path, f"is {domain!r}", 'write a host name, "*" or "*.example.com"')
        domains.append(domain.lower())
    if not domains:
        raise ConfigError(f"{fields.path}.domains", "is empty", 'list the Host names it serves, or "*"')
    result = VirtualHost(name=fields.string("name"), domains=tuple(domains),
                         routes=tuple(_parse_route(Fields(item, path)) for path, item in fields.items("routes")))
    fields.done()
    return result


def parse_route_tables(root: Fields) -> tuple[RouteTable, ...]:
    tables = []
    for path, item in root.items("routeTables"):
        entry = Fields(item, path)
        tables.append(RouteTable(name=entry.string("name"), virtual_hosts=tuple(
            _parse_virtual_host(Fields(vh, vh_path)) for vh_path, vh in entry.items("virtualHosts"))))
        entry.done()
    names = [table.name for table in tables]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError("routeTables", f"name {name!r} is used twice", "give every route table its own name")
    return tuple(tables)


def parse_gateway(fields: Fields, route_tables: tuple[RouteTable, ...]) -> GatewayConfig:
    tables = {table.name for table in route_tables}
    listeners = []
    for path, item in fields.items("listeners"):
        entry = Fields(item, path)
        listener = GatewayListener(address=entry.string("address"), port=entry.port("port"),
                                   route_table=entry.string("routeTable"))
        check_host_port(listener.address, f"{path}.address")
        if listener.route_table not in tables:
            raise ConfigError(f"{path}.routeTable", f"names {listener.route_table!r}, which is not in routeTables",
                              f"use one of: {', '.join(sorted(tables)) or 'none defined; add a route table'}")
        entry.done()
        listeners.append(listener)
    fields.done()
    return GatewayConfig(listeners=tuple(listeners))


def parse_endpoints(fields: Fields) -> tuple[str, ...]:
    """An `endpoints` list of `ip:port`, each checked."""
    endpoints = []
    for path, endpoint in fields.items("endpoints"):
        check_host_port(str(endpoint), path)
        endpoints.append(str(endpoint))
    return tuple(endpoints)


def parse_subsets(fields: Fields) -> tuple[ServiceSubset, ...]:
    subsets = []
    for path, item in fields.items("subsets"):
        entry = Fields(item, path)
        subsets.append(ServiceSubset(name=entry.string("name"), endpoints=parse_endpoints(entry)))
        entry.done()
    return tuple(subsets)


# ---------------------------------------------------------------------------------------------
# Writing


def dump_string_match(match: StringMatch) -> dict[str, Any]:
    return {"present": True} if match.kind == "present" else {match.kind: match.value}


def _dump_route(route: Route) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": route.name,
        "match": [_drop_empty({
            "uri": dump_string_match(m.uri) if m.uri else None,
            "headers": {name: dump_string_match(value) for name, value in m.headers},
            "method": dump_string_match(m.method) if m.method else None,
        }) for m in route.match],
        "destinations": [_drop_empty({"host": d.host, "port": d.port, "subset": d.subset, "weight": d.weight})
                         for d in route.destinations],
    }
    if route.decorator is not None:
        document["decorator"] = route.decorator
    if route.rewrite_uri is not None:
        document["rewriteUri"] = route.rewrite_uri
    if route.timeout_s is not None:
        document["timeout"] = format_duration(route.timeout_s)
    if route.retries is not None:
        retries: dict[str, Any] = {"attempts": route.retries.attempts, "retryOn": ",".join(route.retries.retry_on)}
        if route.retries.per_try_timeout_s is not None:
            retries["perTryTimeout"] = format_duration(route.retries.per_try_timeout_s)
        document["retries"] = retries
    return document


def dump_route_tables(tables: tuple[RouteTable, ...]) -> list[dict[str, Any]]:
    return [{"name": table.name, "virtualHosts": [
        {"name": vh.name, "domains": list(vh.domains), "routes": [_dump_route(r) for r in vh.routes]}
        for vh in table.virtual_hosts]} for table in tables]


def dump_gateway(gateway: GatewayConfig) -> dict[str, Any]:
    return {"listeners": [{"address": listener.address, "port": listener.port, "routeTable": listener.route_table}
                          for listener in gateway.listeners]}


def dump_subsets(subsets: tuple[ServiceSubset, ...]) -> list[dict[str, Any]]:
    return [{"name": subset.name, "endpoints": list(subset.endpoints)} for subset in subsets]


def _drop_empty(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None and value != {}}
