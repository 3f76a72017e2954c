"""Matching a request against a route table (Envoy's RouteConfiguration), pure and I/O-free.

Virtual host selection follows Envoy's RouteMatcher (source/common/router/config_impl.cc): an exact
domain first, then the longest `*.suffix` / `-suffix` wildcard, then the longest `prefix*`, then `*`;
the Host header is compared lower-case, and a host carrying a port that no domain names is tried
again without it (Istio lists both `host` and `host:port` domains; Envoy strips the port when
`strip_any_host_port` or the domain has none). Within a virtual host, the first route whose match
alternatives accept the request wins.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

from tracemesh_sidecar.config.routes import Route, RouteMatch, RouteTable, VirtualHost, WeightedDestination

Chooser = Callable[[int], int]  # random integer in [0, n): the weighted pick's dice, a seam for tests


class CompiledRouteTable:
    """A route table's domains indexed once per config; looked up per request."""

    def __init__(self, table: RouteTable) -> None:
        self.name = table.name
        self._exact: dict[str, VirtualHost] = {}
        self._suffix: list[tuple[str, VirtualHost]] = []
        self._prefix: list[tuple[str, VirtualHost]] = []
        self._default: VirtualHost | None = None
        for virtual_host in table.virtual_hosts:
            for domain in virtual_host.domains:
                if domain == "*":
                    self._default = self._default or virtual_host
                elif domain.startswith("*"):
                    self._suffix.append((domain[1:], virtual_host))
                elif domain.endswith("*"):
                    self._prefix.append((domain[:-1], virtual_host))
                else:
                    self._exact.setdefault(domain, virtual_host)
        # Longest wildcard first, as Envoy orders them; a stable sort keeps the table's order among equals.
        self._suffix.sort(key=lambda item: -len(item[0]))
        self._prefix.sort(key=lambda item: -len(item[0]))

    def virtual_host(self, authority: str) -> VirtualHost | None:
        host = authority.lower()
        found = self._by_domain(host)
        if found is None:
            bare = _strip_port(host)
            if bare != host:
                found = self._by_domain(bare)
        return found if found is not None else self._default

    def _by_domain(self, host: str) -> VirtualHost | None:
        exact = self._exact.get(host)
        if exact is not None:
            return exact
        for suffix, virtual_host in self._suffix:
            if len(host) > len(suffix) and host.endswith(suffix):
                return virtual_host
        for prefix, virtual_host in self._prefix:
            if len(host) > len(prefix) and host.startswith(prefix):
                return virtual_host
        return None


def first_route(virtual_host: VirtualHost, method: str, path: str, headers: Mapping[str, str]) -> Route | None:
    """The first route of the virtual host whose match alternatives accept the request; None: Envoy's 404 NR."""
    for route in virtual_host.routes:
        if not route.match or any(_matches(alternative, method, path, headers) for alternative in route.match):
            return route
    return None


def _matches(match: RouteMatch, method: str, path: str, headers: Mapping[str, str]) -> bool:
    # Envoy matches the path without its query string (path_match on `:path` minus `?...`).
    if match.uri is not None and not match.uri.matches(path.partition("?")[0]):
        return False
    if match.method is not None and not match.method.matches(method):
        return False
    return all(condition.matches(headers.get(name)) for name, condition in match.headers)


def pick_destination(route: Route, chooser: Chooser = random.randrange) -> WeightedDestination:
    """Envoy's weighted_clusters: a random number below the total weight, walked through the weights in order."""
    destinations = route.destinations
    if len(destinations) == 1:
        return destinations[0]
    total = sum(destination.weight for destination in destinations)
    if total <= 0:
        return destinations[0]
    roll = chooser(total)
    for destination in destinations:
        if roll < destination.weight:
            return destination
        roll -= destination.weight
    return destinations[-1]


def rewrite_path(route: Route, hit_path: str) -> str:
    """Istio's `rewrite.uri`: replaces the matched prefix (Envoy's prefix_rewrite), or the whole path for
    an exact or regex match (Istio compiles those to a full-path regex rewrite); the query string stays."""
    rewrite = route.rewrite_uri
    if rewrite is None:
        return hit_path
    path, mark, query = hit_path.partition("?")
    for alternative in route.match:
        uri = alternative.uri
        if uri is not None and uri.kind == "prefix" and path.startswith(uri.value):
            return rewrite + path[len(uri.value):] + mark + query
        if uri is not None and uri.matches(path):
            return rewrite + mark + query
    # No uri condition: Istio's match-all prefix "/", which the rewrite replaces.
    return rewrite + path[1:] + mark + query


def _strip_port(host: str) -> str:
    if host.startswith("["):
        end = host.find("]")
        return host[:end + 1] if end >= 0 else host
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() else host
