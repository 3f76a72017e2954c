"""Istio's networking API (Gateway, VirtualService, DestinationRule) read into the records routes compile from. Pure.

What the proxies act on is read; every other field Istio's CRD accepts is named in a notice (the Honoured
condition), never silently dropped. A field whose value cannot be acted on at all (a retryOn condition
Envoy lacks, a duration that is no duration) makes the resource a Problem: its last good version stays.
The Gateway API's resources are translated into the same records (gateway_api.py), as istiod does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tracemesh_operator.compiler.model import Problem
from tracemesh_sidecar.config import ConfigError, RetryPolicy, RouteMatch, StringMatch
from tracemesh_sidecar.config.fields import Fields
from tracemesh_sidecar.config.routes import RETRY_ON_CONDITIONS, StringMatchKind

MESH_GATEWAY = "mesh"  # VirtualService.gateways: the sidecars of the mesh
CLUSTER_DOMAIN = "cluster.local"
# pilot/pkg/networking/core/route/retry/retry.go: the policy of a route without `retries` (DefaultPolicy),
# and the retryOn of one whose `retries` leave it out.
DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes")
DEFAULT_RETRIES = RetryPolicy(attempts=2, retry_on=DEFAULT_RETRY_ON)
# Server protocols a gateway serves with HTTP routes (protocol.Instance.IsHTTP).
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})


@dataclass(frozen=True, slots=True)
class Server:
    port: int  # the server's port number (a Service port of the gateway, or the port it binds)
    protocol: str
    hosts: tuple[str, ...]  # as written: `host`, `ns/host`, `./host`, `*/host`


@dataclass(frozen=True, slots=True)
class GatewayRules:
    """An Istio Gateway, or a Gateway API Gateway as istiod translates it."""

    kind: str
    namespace: str
    name: str
    selector: Mapping[str, str]
    servers: tuple[Server, ...]  # the HTTP ones: the others are notices
    notices: tuple[Problem, ...] = ()
    same_namespace: bool = False  # Gateway API: only the Gateway's own pods, in its namespace

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selects(self, namespace: str, labels: Mapping[str, str]) -> bool:
        if not self.selector or (self.same_namespace and namespace != self.namespace):
            return False
        return all(labels.get(key) == value for key, value in self.selector.items())


@dataclass(frozen=True, slots=True)
class Destination:
    host: str  # FQDN
    port: int | None  # None: the Service's only port
    subset: str | None
    weight: int | None  # None: not written (one destination: all; several: 0)


@dataclass(frozen=True, slots=True)
class HttpRule:
    """One `http[]` rule of a VirtualService (one `rules[]` entry of an HTTPRoute)."""

    name: str
    matches: tuple[RouteMatch, ...]  # alternatives; empty: every request
    destinations: tuple[Destination, ...]
    rewrite_uri: str | None = None
    timeout_s: float | None = None
    retries: RetryPolicy | None = DEFAULT_RETRIES  # None: retries disabled (attempts 0)
    # Each match's path in the decorator where it is not the match's own (an HTTPRoute's PathPrefix: `/*`).
    decorator_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RoutingRules:
    """A VirtualService, or an HTTPRoute as istiod translates it."""

    kind: str
    namespace: str
    name: str
    created: str
    hosts: tuple[str, ...]  # FQDNs or wildcards; "*" any
    gateways: tuple[str, ...]  # `namespace/name` of gateways, or MESH_GATEWAY
    http: tuple[HttpRule, ...]
    notices: tuple[Problem, ...] = ()

    @property
    def resource(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class SubsetRules:
    """A DestinationRule's subsets: the pods of `host` carrying each subset's labels."""

    namespace: str
    name: str
    created: str
    host: str  # FQDN
    subsets: tuple[tuple[str, Mapping[str, str]], ...]
    notices: tuple[Problem, ...] = ()


def fqdn(host: str, namespace: str, cluster_domain: str = CLUSTER_DOMAIN) -> str:
    """Istio's ResolveShortnameToFQDN: a name without a dot is a Service of the resource's namespace."""
    if host == "*" or "." in host:
        return host
    return f"{host}.{namespace}.svc.{cluster_domain}"


def identity(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """namespace, name, creationTimestamp."""
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    return (str(metadata.get("namespace") or "default"), str(metadata.get("name") or ""),
            str(metadata.get("creationTimestamp") or ""))


class Notices:
    """Collects what a resource sets that is accepted but not acted on."""

    def __init__(self, resource: str) -> None:
        self.resource = resource
        self.found: list[Problem] = []

    def add(self, field: str, problem: str, fix: str, reason: str = "UnsupportedField") -> None:
        self.found.append(Problem(self.resource, field, reason, problem, fix))

    def unread(self, fields: Fields, honoured: frozenset[str], what: str = "") -> None:
        """Every key of `fields` set but not in `honoured`."""
        for key in fields.keys():  # noqa: SIM118 (Fields is not a dict)
            if key not in honoured and fields.has(key):
                self.add(f"{fields.path}.{key}", f"is accepted as Istio accepts it, but not acted on{what}",
                         "remove it, or keep it for Istio; tracemesh routes as if it were not set")


def _problem(resource: str, kind: str, error: ConfigError) -> Problem:
    return Problem(resource, error.field, f"Invalid{kind}", error.problem, error.fix)


# -- Gateway -----------------------------------------------------------------------------------------------


def read_gateway(obj: Mapping[str, Any]) -> GatewayRules | Problem:
    namespace, name, _ = identity(obj)
    notices = Notices(f"Gateway {namespace}/{name}")
    try:
        spec = Fields(obj.get("spec"), "spec")
        selector = spec.string_map("selector")
        servers = []
        for path, item in spec.items("servers"):
            entry = Fields(item, path)
            port = entry.mapping("port")
            number, protocol = port.integer("number", minimum=1, maximum=65535), port.string("protocol").upper()
            hosts = tuple(str(host) for _, host in entry.items("hosts"))
            if protocol not in HTTP_PROTOCOLS:
                notices.add(f"{path}.port.protocol", f"is {protocol}; only HTTP servers are served",
                            "use protocol HTTP; TLS termination and TCP proxying are not implemented")
                continue
            notices.unread(entry, frozenset({"port", "hosts", "name"}))
            notices.unread(port, frozenset({"number", "protocol", "name", "targetPort"}))
            servers.append(Server(number, protocol, hosts))
    except ConfigError as error:
        return _problem(notices.resource, "Gateway", error)
    if not selector:
        notices.add("spec.selector", "is empty, so no gateway workload is selected",
                    "select the gateway pods, e.g. istio: ingressgateway", reason="NoSelector")
    return GatewayRules("Gateway", namespace, name, selector, tuple(servers), tuple(notices.found))


# -- VirtualService ----------------------------------------------------------------------------------------

_VS_HONOURED = frozenset({"hosts", "gateways", "http"})
_HTTP_HONOURED = frozenset({"name", "match", "route", "rewrite", "timeout", "retries"})
_MATCH_HONOURED = frozenset({"uri", "headers", "method", "name"})
_ROUTE_HONOURED = frozenset({"destination", "weight"})
_DESTINATION_HONOURED = frozenset({"host", "subset", "port"})
_RETRIES_HONOURED = frozenset({"attempts", "perTryTimeout", "retryOn"})


def gateway_reference(reference: str, namespace: str) -> str:
    """VirtualService.gateways: `mesh`, `name` (the VirtualService's namespace) or `namespace/name`."""
    return reference if reference == MESH_GATEWAY or "/" in reference else f"{namespace}/{reference}"


def read_virtual_service(obj: Mapping[str, Any], cluster_domain: str = CLUSTER_DOMAIN) -> RoutingRules | Problem:
    namespace, name, created = identity(obj)
    notices = Notices(f"VirtualService {namespace}/{name}")
    try:
        spec = Fields(obj.get("spec"), "spec")
        hosts = tuple(fqdn(str(host), namespace, cluster_domain) for _, host in spec.items("hosts"))
        gateways = tuple(gateway_reference(str(ref), namespace) for _, ref in spec.items("gateways"))
        rules = tuple(rule for path, item in spec.items("http")
                      if (rule := _read_http(Fields(item, path), namespace, cluster_domain, notices)) is not None)
        notices.unread(spec, _VS_HONOURED, " (only http routes are implemented)")
    except ConfigError as error:
        return _problem(notices.resource, "VirtualService", error)
    return RoutingRules("VirtualService", namespace, name, created, hosts, gateways or (MESH_GATEWAY,), rules,
                        tuple(notices.found))


def _read_http(entry: Fields, namespace: str, cluster_domain: str, notices: Notices) -> HttpRule | None:
    notices.unread(entry, _HTTP_HONOURED)
    destinations = []
    for path, item in entry.items("route"):
        route = Fields(item, path)
        notices.unread(route, _ROUTE_HONOURED)
        destination = route.mapping("destination")
        notices.unread(destination, _DESTINATION_HONOURED)
        destinations.append(Destination(
            host=fqdn(destination.string("host"), namespace, cluster_domain),
            port=destination.mapping("port").integer("number", None, minimum=1, maximum=65535),
            subset=destination.string("subset", None), weight=route.integer("weight", None, minimum=0)))
    if not destinations:
        notices.add(entry.path, "has no route (a redirect, directResponse or delegate), so it is left out",
                    "give it a route[].destination; redirects and direct responses are not implemented")
        return None
    matches = []
    for path, item in entry.items("match"):
        match = Fields(item, path)
        notices.unread(match, _MATCH_HONOURED, "; the match is wider than written")
        headers = match.mapping("headers")
        matches.append(RouteMatch(
            uri=_string_match(match.mapping("uri")) if match.has("uri") else None,
            headers=tuple((header.lower(), _string_match(headers.mapping(header)))
                          for header in sorted(headers.keys())),
            method=_string_match(match.mapping("method")) if match.has("method") else None))
    rewrite = entry.mapping("rewrite")
    notices.unread(rewrite, frozenset({"uri"}))
    return HttpRule(name=entry.string("name", "", allow_empty=True), matches=tuple(matches),
                    destinations=tuple(destinations), rewrite_uri=rewrite.string("uri", None, allow_empty=True),
                    timeout_s=entry.duration("timeout", None),
                    retries=_retries(entry.mapping("retries"), notices) if entry.has("retries") else DEFAULT_RETRIES)


def _string_match(fields: Fields) -> StringMatch:
    """Istio's StringMatch; an empty one (`end-user: {}`) matches the header's presence."""
    kinds: tuple[StringMatchKind, ...] = ("exact", "prefix", "regex")
    for kind in kinds:
        if fields.has(kind):
            return StringMatch(kind, fields.string(kind, allow_empty=True))
    return StringMatch("present")


def _retries(fields: Fields, notices: Notices) -> RetryPolicy | None:
    """retry.go ConvertPolicy: attempts 0 disables retries; numbers in retryOn are retriable status codes."""
    notices.unread(fields, _RETRIES_HONOURED)
    attempts = fields.integer("attempts", 0, minimum=0)
    if attempts == 0:
        return None
    retry_on: tuple[str, ...] = DEFAULT_RETRY_ON
    if fields.has("retryOn"):
        retry_on = tuple(item.strip() for item in fields.string("retryOn").split(",") if item.strip())
        for item in retry_on:
            if not item.isdigit() and item not in RETRY_ON_CONDITIONS:
                raise ConfigError(f"{fields.path}.retryOn", f"names {item!r}, which is no Envoy retry condition",
                                  f"use status codes or some of: {', '.join(RETRY_ON_CONDITIONS)}")
        if any(item.isdigit() for item in retry_on) and "retriable-status-codes" not in retry_on:
            retry_on = (*retry_on, "retriable-status-codes")
    return RetryPolicy(attempts=attempts, per_try_timeout_s=fields.duration("perTryTimeout", None), retry_on=retry_on)


# -- DestinationRule ---------------------------------------------------------------------------------------


def read_destination_rule(obj: Mapping[str, Any], cluster_domain: str = CLUSTER_DOMAIN) -> SubsetRules | Problem:
    namespace, name, created = identity(obj)
    notices = Notices(f"DestinationRule {namespace}/{name}")
    try:
        spec = Fields(obj.get("spec"), "spec")
        host = fqdn(spec.string("host"), namespace, cluster_domain)
        subsets = []
        for path, item in spec.items("subsets"):
            entry = Fields(item, path)
            notices.unread(entry, frozenset({"name", "labels"}))
            subsets.append((str(entry.string("name")), entry.string_map("labels")))
        notices.unread(spec, frozenset({"host", "subsets"}), " (load balancing follows round robin)")
    except ConfigError as error:
        return _problem(notices.resource, "DestinationRule", error)
    return SubsetRules(namespace, name, created, host, tuple(subsets), tuple(notices.found))
