"""Where a request goes: pure routing decisions from the config in force (no I/O).

Built once per config (Runtime.apply); looked up per request. Normalized authorities are
cached because the same few hosts repeat on every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from tracemesh_sidecar.config.model import ProxyConfig, check_host_port
from tracemesh_sidecar.config.protocol import upstream_http2
from tracemesh_sidecar.config.routes import WeightedDestination
from tracemesh_sidecar.native_dataclasses import rebuilt_from_fields
from tracemesh_sidecar.tracing.hosts import normalize_host

_CACHE_LIMIT: Final = 4096


# Its own `__init__`, as Record has: compiled, reading a field of a native class is a load, where a NamedTuple's is a
# generic attribute lookup (callgrind: ~200 instructions, a dozen reads a request). Built once per config and
# endpoint (a passthrough's per request); read-only once built.
@dataclass(slots=True)
class Destination:
    host: str  # where to connect
    port: int
    operation: str  # the route's decorator: the span's name, `{service FQDN}:{service port}/*`
    cluster: str  # `outbound|{port}||{FQDN}` or `inbound|{port}||`
    decorated: bool = True  # False: a passthrough to a host no Service names (Istio's route has no decorator)
    # The upstream's HTTP version from the Service port's protocol (config/protocol.py upstream_http2): True HTTP/2,
    # False HTTP/1.1, None the downstream's (an undeclared port, or a passthrough).
    http2: bool | None = None

    def __init__(self, host: str, port: int, operation: str, cluster: str, decorated: bool = True,
                 http2: bool | None = None) -> None:
        self.host = host
        self.port = port
        self.operation = operation
        self.cluster = cluster
        self.decorated = decorated
        self.http2 = http2

    def __reduce__(self) -> tuple[type[Any], tuple[object, ...]]:
        return rebuilt_from_fields(self)


def outbound_route(fqdn: str, port: int, subset: str = "") -> tuple[str, str]:
    """(operation, cluster) of Istio's outbound route to a Service port (route.go buildSidecarVirtualHostForService);
    a DestinationRule subset names its own cluster (model.BuildSubsetKey)."""
    return f"{fqdn}:{port}/*", f"outbound|{port}|{subset}|{fqdn}"


def cluster_service(cluster: str) -> str:
    """`outbound|9080||reviews.default.svc.cluster.local` -> `reviews.default.svc.cluster.local:9080`: the
    authority a sidecar's `outbound` route table is consulted with once the destination service is known."""
    _, port, _, fqdn = cluster.split("|", 3)
    return f"{fqdn}:{port}"


class OutboundRouter:
    def __init__(self, config: ProxyConfig) -> None:
        self._namespace = config.node.namespace
        self._domain = config.node.cluster_domain
        self._normalized: dict[str, tuple[str, int | None]] = {}
        self.services: dict[tuple[str, int], ServiceRoute] = {}
        # Transparent capture: a Service's (ClusterIP, port) -> its route, so that each request picks an
        # endpoint (kube-proxy would pick once per pooled connection).
        self.virtual: dict[tuple[str, int], ServiceRoute] = {}
        # A route table's destinations with a DestinationRule subset: (FQDN, port, subset) -> its endpoints.
        self.subsets: dict[tuple[str, int, str], ServiceRoute] = {}
        for service in config.outbound.services:
            fqdn, _ = normalize_host(service.host, self._namespace, self._domain)
            http2 = upstream_http2(service.protocol)
            route = self.services[(fqdn, service.port)] = ServiceRoute(service.endpoints,
                                                                       *outbound_route(fqdn, service.port), http2)
            for address in service.addresses:
                self.virtual[(address, service.port)] = route
            for subset in service.subsets:
                self.subsets[(fqdn, service.port, subset.name)] = ServiceRoute(
                    subset.endpoints, *outbound_route(fqdn, service.port, subset.name), http2)

    def normalize(self, authority: str) -> tuple[str, int | None]:
        result = self._normalized.get(authority)
        if result is None:
            if len(self._normalized) >= _CACHE_LIMIT:
                self._normalized.clear()
            result = self._normalized[authority] = normalize_host(authority, self._namespace, self._domain)
        return result

    def by_authority(self, authority: str, default_port: int = 80) -> Destination | None:
        """Explicit proxy: a registered service's next endpoint, else the host itself (DNS/IP).

        None when the authority has no usable host (the caller answers 503 UH)."""
        fqdn, port = self.normalize(authority)
        if not fqdn:
            return None
        if port is None:
            if _has_port(authority):
                return None  # a port that is not a number in 1-65535
            port = default_port
        route = self.services.get((fqdn, port))
        if route is not None:
            return route.destination()
        return Destination(_host_part(authority) or fqdn, port, *outbound_route(fqdn, port), decorated=False)

    def weighted(self, destination: WeightedDestination) -> tuple[ServiceRoute | None, str]:
        """A route table destination's endpoints (None: no such service or subset, Envoy's 503 NC) and its cluster."""
        fqdn, _ = self.normalize(destination.host)
        if destination.subset:
            return (self.subsets.get((fqdn, destination.port, destination.subset)),
                    outbound_route(fqdn, destination.port, destination.subset)[1])
        return self.services.get((fqdn, destination.port)), outbound_route(fqdn, destination.port)[1]

    def transparent(self, authority: str, original: tuple[str, int]) -> Destination | None:
        """Captured traffic to a known Service address goes to its next endpoint, named after the Service;
        other captured traffic goes where the client aimed, named from the Host header.

        None for a known Service with no endpoints (the caller answers 503 UH, Envoy's "no healthy upstream")."""
        route = self.virtual.get(original)
        if route is not None:
            return route.destination()
        fqdn = self.normalize(authority)[0] if authority else ""
        return Destination(original[0], original[1], *outbound_route(fqdn or original[0], original[1]),
                           decorated=False)


class ServiceRoute:
    """A Service port's endpoints, round-robin, each as the Destination a request to it gets: built once per config,
    so that a request picks one and builds none."""

    __slots__ = ("_destinations", "_next", "cluster", "http2", "operation")

    def __init__(self, endpoints: tuple[str, ...], operation: str, cluster: str, http2: bool | None = None) -> None:
        self.operation = operation
        self.cluster = cluster
        self.http2 = http2
        addresses = [check_host_port(endpoint, "endpoint") for endpoint in endpoints]
        self._destinations = [Destination(host, port, operation, cluster, http2=http2) for host, port in addresses]
        self._next = 0

    def destination(self) -> Destination | None:
        destinations = self._destinations
        if not destinations:
            return None
        destination = destinations[self._next % len(destinations)]
        self._next += 1
        return destination


class InboundRouter:
    """Captured or listened-for inbound traffic -> the app, on Istio's inbound chain of the port it arrived on."""

    def __init__(self, config: ProxyConfig) -> None:
        self._app_address = config.inbound.app_address
        self._own_host = config.node.own_host
        self._ports = {entry.port: Destination(self._app_address, entry.app_port, entry.operation(self._own_host),
                                               inbound_cluster(entry.port), http2=upstream_http2(entry.protocol))
                       for entry in config.inbound.ports}

    def to_app(self, port: int) -> Destination:
        """`port`: the workload port the caller aimed at (the original destination, or the listener's)."""
        destination = self._ports.get(port)
        if destination is None:  # a port no config names: Istio's passthrough chain, straight to the app
            destination = Destination(self._app_address, port, f"{self._own_host}:{port}/*", inbound_cluster(port))
        return destination


def inbound_cluster(port: int) -> str:
    """Istio's inbound cluster name (model.BuildInboundSubsetKey): by the workload port, not the Service's."""
    return f"inbound|{port}||"


def _has_port(authority: str) -> bool:
    if authority.startswith("["):
        return "]:" in authority
    return authority.count(":") == 1


def _host_part(authority: str) -> str:
    """The host as the client wrote it (what DNS resolves), without brackets or port."""
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    return authority.partition(":")[0] if authority.count(":") == 1 else authority


def split_absolute_target(target: bytes) -> tuple[str, bytes] | None:
    """`http://reviews:9080/x?y` -> ("reviews:9080", b"/x?y"); None when `target` is not absolute-form http."""
    if target[:7].lower() != b"http://":
        return None
    rest = target[7:]
    end = len(rest)
    for delimiter in (b"/", b"?", b"#"):
        index = rest.find(delimiter)
        if 0 <= index < end:
            end = index
    authority = rest[:end].rpartition(b"@")[2]  # userinfo is never forwarded
    path = rest[end:]
    if not path.startswith(b"/"):
        path = b"/" + path
    return authority.decode("latin-1"), path


_LOOPBACK_NAMES: Final = frozenset({"127.0.0.1", "localhost", "0.0.0.0", "::1", "::"})


def is_own_address(local: tuple[str, int], host: str, port: int) -> bool:
    """Whether `host:port` is the listener at `local` itself (a request for the proxy would loop forever)."""
    return port == local[1] and (host == local[0] or host in _LOOPBACK_NAMES)
