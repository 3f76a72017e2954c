"""What the proxy knew about one finished request or opaque TCP connection: what metrics and access logs read.

Built once per request at its end, only when a metric or an access log of its direction is on. It is also
the `Attributes` of the expressions (telemetry/expressions.py), by Envoy's attribute names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from tracemesh_sidecar.native_dataclasses import rebuilt_from_fields
from tracemesh_sidecar.telemetry.peer import Peer

# Envoy's %RESPONSE_CODE_DETAILS% for the local replies this proxy makes (by response flag), and for a response
# relayed from upstream (`via_upstream`).
VIA_UPSTREAM: Final = "via_upstream"
FLAG_DETAILS: Final = {
    "UF": "upstream_reset_before_response_started{connection_failure}",
    "UC": "upstream_reset_before_response_started{connection_termination}",
    "UH": "no_healthy_upstream",
    "UT": "response_timeout",
    "UPE": "upstream_reset_before_response_started{protocol_error}",
    "NR": "route_not_found",
    "NC": "cluster_not_found",
    "DC": "downstream_remote_disconnect",
    "DPE": "http1.invalid_characters",
}


def address(pair: tuple[str, int] | None) -> str | None:
    """Envoy's `ip:port` text of an address (`[v6]:port`), None when unknown."""
    if pair is None or not pair[0]:
        return None
    host, port = pair
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# Its own `__init__`, as the span model's classes have (mypyc compiles it; @dataclass's stays interpreted Python):
# one is built per request; rebuilt from its fields for copy and pickle (native_dataclasses.py).
@dataclass(slots=True)
class Record:
    """One HTTP request, or one opaque TCP connection (`tcp`: no method, path, headers or status)."""

    tcp: bool
    method: str
    path: str  # the request target as received (origin-form)
    authority: str
    protocol: str  # `HTTP/1.1`
    request_headers: Mapping[str, str]  # lowercase name -> value (repeats joined with ", ")
    response_headers: Mapping[str, str]  # lowercase name -> value
    status: int  # 0: no response was sent
    flags: str  # Envoy's response flags, "-" for none
    bytes_received: int  # request body (TCP: bytes from downstream)
    bytes_sent: int  # response body (TCP: bytes to downstream)
    start_us: int  # epoch µs
    end_us: int
    upstream_host: tuple[str, int] | None
    upstream_local: tuple[str, int] | None
    cluster: str | None  # `outbound|9080||reviews.default.svc.cluster.local`, `inbound|9080||`
    service_host: str | None  # the destination Service's FQDN, None for passthrough
    downstream_local: tuple[str, int] | None
    downstream_remote: tuple[str, int] | None
    route_name: str | None
    peer: Peer  # the workload on the other end (source at the server, destination at the client)

    def __init__(self, tcp: bool, method: str, path: str, authority: str, protocol: str,
                 request_headers: Mapping[str, str], response_headers: Mapping[str, str], status: int, flags: str,
                 bytes_received: int, bytes_sent: int, start_us: int, end_us: int,
                 upstream_host: tuple[str, int] | None, upstream_local: tuple[str, int] | None, cluster: str | None,
                 service_host: str | None, downstream_local: tuple[str, int] | None,
                 downstream_remote: tuple[str, int] | None, route_name: str | None, peer: Peer) -> None:
        self.tcp = tcp
        self.method = method
        self.path = path
        self.authority = authority
        self.protocol = protocol
        self.request_headers = request_headers
        self.response_headers = response_headers
        self.status = status
        self.flags = flags
        self.bytes_received = bytes_received
        self.bytes_sent = bytes_sent
        self.start_us = start_us
        self.end_us = end_us
        self.upstream_host = upstream_host
        self.upstream_local = upstream_local
        self.cluster = cluster
        self.service_host = service_host
        self.downstream_local = downstream_local
        self.downstream_remote = downstream_remote
        self.route_name = route_name
        self.peer = peer

    def __reduce__(self) -> tuple[type[Any], tuple[object, ...]]:
        return rebuilt_from_fields(self)

    @property
    def duration_ms(self) -> int:
        return (self.end_us - self.start_us) // 1000

    @property
    def details(self) -> str:
        if self.flags == "-":
            return VIA_UPSTREAM if self.status else "-"
        return FLAG_DETAILS.get(self.flags.split(",")[0], self.flags)

    @property
    def grpc(self) -> bool:
        return self.request_headers.get("content-type", "").startswith("application/grpc")

    def attribute(self, name: str) -> object:
        """Envoy's request attributes by name; KeyError when this request has none."""
        getter = _ATTRIBUTES.get(name)
        if getter is not None:
            value = getter(self)
        elif name.startswith(("upstream_peer.", "downstream_peer.")):
            value = _peer_field(self.peer, name.partition(".")[2])
        else:
            raise KeyError(name)
        if value is None:
            raise KeyError(name)
        return value


def _peer_field(peer: Peer, field: str) -> object:
    if field == "labels":
        return dict(peer.labels)
    if field == "service":
        return peer.canonical_service
    if field == "revision":
        return peer.canonical_revision
    value = getattr(peer, field, None)
    return None if value == "unknown" else value


def _path_only(record: Record) -> str:
    return record.path.partition("?")[0]


def _query(record: Record) -> str:
    return record.path.partition("?")[2]


_ATTRIBUTES: Final[dict[str, Callable[[Record], object]]] = {
    "request.host": lambda r: r.authority,
    "request.path": lambda r: r.path,
    "request.url_path": _path_only,
    "request.query": _query,
    "request.method": lambda r: r.method,
    "request.scheme": lambda r: "http",
    "request.protocol": lambda r: r.protocol,
    "request.id": lambda r: r.request_headers.get("x-request-id"),
    "request.useragent": lambda r: r.request_headers.get("user-agent"),
    "request.referer": lambda r: r.request_headers.get("referer"),
    "request.headers": lambda r: r.request_headers,
    "request.size": lambda r: r.bytes_received,
    "request.total_size": lambda r: r.bytes_received,
    "request.duration": lambda r: timedelta(microseconds=r.end_us - r.start_us),
    "response.code": lambda r: r.status,
    "response.code_details": lambda r: r.details,
    "response.flags": lambda r: r.flags,
    "response.grpc_status": lambda r: r.response_headers.get("grpc-status"),
    "response.headers": lambda r: r.response_headers,
    "response.size": lambda r: r.bytes_sent,
    "response.total_size": lambda r: r.bytes_sent,
    "source.address": lambda r: r.downstream_remote[0] if r.downstream_remote else None,
    "source.port": lambda r: r.downstream_remote[1] if r.downstream_remote else None,
    "destination.address": lambda r: r.downstream_local[0] if r.downstream_local else None,
    "destination.port": lambda r: r.downstream_local[1] if r.downstream_local else None,
    "connection.mtls": lambda r: False,
    "upstream.address": lambda r: r.upstream_host[0] if r.upstream_host else None,
    "upstream.port": lambda r: r.upstream_host[1] if r.upstream_host else None,
    "upstream.local_address": lambda r: address(r.upstream_local),
    "xds.cluster_name": lambda r: r.cluster,
    "xds.route_name": lambda r: r.route_name,
}
