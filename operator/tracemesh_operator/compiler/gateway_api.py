"""The Kubernetes Gateway API (Gateway, HTTPRoute) read as istiod translates it: into an Istio Gateway and
VirtualServices (pilot/pkg/config/kube/gateway/conversion.go), the same records the networking API gives. Pure.

A Gateway of class `istio` selects the pods of its own Deployment by `gateway.networking.k8s.io/gateway-name`;
each HTTP listener is a server whose hosts carry `allowedRoutes` (Same: `./host`, All: `*/host`). A PathPrefix
match is Envoy's path-separated prefix in Istio (route.go translateRouteMatch): `/static` matches `/static` and
`/static/...`, not `/staticx`; here that is the full-match regex `/static(/.*)?`, and the decorator is `/*`, as
GetRouteOperation knows no path-separated prefix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tracemesh_operator.compiler.model import Problem
from tracemesh_operator.compiler.networking import (
    CLUSTER_DOMAIN,
    Destination,
    GatewayRules,
    HttpRule,
    Notices,
    RoutingRules,
    Server,
    fqdn,
    identity,
)
from tracemesh_sidecar.config import ConfigError, RouteMatch, StringMatch
from tracemesh_sidecar.config.fields import Fields

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_CLASS = "istio"
CONTROLLER_NAME = "istio.io/gateway-controller"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"  # on the pods of a Gateway's own Deployment
_HTTP_LISTENER_PROTOCOLS = frozenset({"HTTP"})


def is_istio_gateway(obj: Mapping[str, Any]) -> bool:
    spec = obj.get("spec")
    return isinstance(spec, Mapping) and spec.get("gatewayClassName") == GATEWAY_CLASS


def read_k8s_gateway(obj: Mapping[str, Any]) -> GatewayRules | Problem:
    namespace, name, _ = identity(obj)
    notices = Notices(f"Gateway.gateway.networking.k8s.io {namespace}/{name}")
    try:
        spec = Fields(obj.get("spec"), "spec")
        servers = []
        for path, item in spec.items("listeners"):
            listener = Fields(item, path)
            protocol = listener.string("protocol")
            if protocol not in _HTTP_LISTENER_PROTOCOLS:
                notices.add(f"{path}.protocol", f"is {protocol}; only HTTP listeners are served",
                            "use protocol HTTP; HTTPS, TLS, TCP and UDP listeners are not implemented")
                continue
            scope = _route_namespaces(listener.mapping("allowedRoutes"), notices)
            servers.append(Server(listener.integer("port", minimum=1, maximum=65535), protocol,
                                  (f"{scope}/{listener.string('hostname', '*')}",)))
        notices.unread(spec, frozenset({"gatewayClassName", "listeners"}))
    except ConfigError as error:
        return Problem(notices.resource, error.field, "InvalidGateway", error.problem, error.fix)
    return GatewayRules("Gateway", namespace, name, {GATEWAY_NAME_LABEL: name}, tuple(servers),
                        tuple(notices.found), same_namespace=True)


def _route_namespaces(allowed: Fields, notices: Notices) -> str:
    namespaces = allowed.mapping("namespaces")
    origin = namespaces.string("from", "Same")
    if origin == "All":
        return "*"
    if origin == "Selector":
        notices.add(f"{namespaces.path}.from", "is Selector, which is not implemented; routes of the Gateway's "
                    "own namespace attach", "use Same or All")
    return "."


def parent_gateways(obj: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], str]]:
    """The HTTPRoute's parentRefs that are Gateways, each with the Gateway's `namespace/name`."""
    namespace, _, _ = identity(obj)
    spec = obj.get("spec")
    refs = spec.get("parentRefs") if isinstance(spec, Mapping) else None
    found = []
    for ref in refs if isinstance(refs, list) else ():
        if (isinstance(ref, Mapping) and ref.get("group", GATEWAY_GROUP) == GATEWAY_GROUP
                and ref.get("kind", "Gateway") == "Gateway"):
            found.append((ref, f"{ref.get('namespace') or namespace}/{ref.get('name')}"))
    return found


def read_http_route(obj: Mapping[str, Any], cluster_domain: str = CLUSTER_DOMAIN) -> RoutingRules | Problem:
    namespace, name, created = identity(obj)
    notices = Notices(f"HTTPRoute {namespace}/{name}")
    try:
        spec = Fields(obj.get("spec"), "spec")
        hosts = tuple(str(host) for _, host in spec.items("hostnames")) or ("*",)
        spec.raw("parentRefs")
        gateways = tuple(key for _, key in parent_gateways(obj))
        if len(gateways) != len(list(spec.items("parentRefs"))):
            notices.add("spec.parentRefs", "names a parent that is no Gateway (a Service: GAMMA mesh routing), "
                        "which is not implemented", "attach the route to a Gateway, or use a VirtualService")
        rules = []
        for path, item in spec.items("rules"):
            rule = _read_rule(Fields(item, path), namespace, cluster_domain, notices)
            if rule is not None:
                rules.append(rule)
        notices.unread(spec, frozenset({"hostnames", "parentRefs", "rules"}))
    except ConfigError as error:
        return Problem(notices.resource, error.field, "InvalidHTTPRoute", error.problem, error.fix)
    return RoutingRules("HTTPRoute", namespace, name, created, hosts, gateways, tuple(rules), tuple(notices.found))


def _read_rule(rule: Fields, namespace: str, cluster_domain: str, notices: Notices) -> HttpRule | None:
    notices.unread(rule, frozenset({"matches", "backendRefs", "timeouts", "name"}))
    destinations = []
    for path, item in rule.items("backendRefs"):
        ref = Fields(item, path)
        notices.unread(ref, frozenset({"name", "port", "weight", "group", "kind", "namespace"}))
        if ref.string("kind", "Service") != "Service" or ref.string("group", "", allow_empty=True) != "":
            notices.add(path, "is no Service, so it is left out", "reference a Service")
            continue
        if ref.string("namespace", namespace) != namespace:
            notices.add(f"{path}.namespace", "is another namespace (ReferenceGrant is not implemented), so it "
                        "is left out", "route to a Service of the HTTPRoute's namespace")
            continue
        destinations.append(Destination(fqdn(ref.string("name"), namespace, cluster_domain),
                                        ref.integer("port", None, minimum=1, maximum=65535), None,
                                        ref.integer("weight", 1, minimum=0)))
    if not destinations:
        notices.add(rule.path, "has no Service to route to, so it is left out", "give it backendRefs")
        return None
    read = [_read_match(Fields(item, path), notices) for path, item in rule.items("matches")]
    return HttpRule(name=rule.string("name", "", allow_empty=True), matches=tuple(match for match, _ in read),
                    destinations=tuple(destinations),
                    timeout_s=rule.mapping("timeouts").duration("request", None),
                    decorator_paths=tuple(path for _, path in read))


def _read_match(match: Fields, notices: Notices) -> tuple[RouteMatch, str]:
    """The match, and its path in the decorator."""
    notices.unread(match, frozenset({"path", "headers", "method"}), "; the match is wider than written")
    path = match.mapping("path")
    kind, value = path.string("type", "PathPrefix"), path.string("value", "/")
    if kind == "Exact":
        uri, decorator_path = StringMatch("exact", value), value
    elif kind == "RegularExpression":
        uri, decorator_path = StringMatch("regex", value), value
    elif value.rstrip("/") == "":
        uri, decorator_path = StringMatch("prefix", "/"), "/*"
    else:
        uri, decorator_path = StringMatch("regex", f"{re.escape(value.rstrip('/'))}(/.*)?"), "/*"
    headers = []
    for header_path, item in match.items("headers"):
        header = Fields(item, header_path)
        value = header.string("value", allow_empty=True)
        regex = header.string("type", "Exact") == "RegularExpression"
        headers.append((header.string("name").lower(), StringMatch("regex", value) if regex else StringMatch(
            "exact", value)))
    method = match.string("method", None)
    return RouteMatch(uri=uri, headers=tuple(sorted(headers)),
                      method=StringMatch("exact", method) if method else None), decorator_path
