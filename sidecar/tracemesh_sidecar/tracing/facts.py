"""What the proxy tells the tracing core about one request and its response (plain data, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tracemesh_sidecar.native_dataclasses import rebuilt_from_fields

Direction = Literal["inbound", "outbound"]

# Both are built once per request: each writes its `__init__` out, which mypyc compiles (the one @dataclass
# generates stays interpreted Python), and rebuilds from its fields for copy and pickle (native_dataclasses.py).


@dataclass(slots=True)
class RequestFacts:
    method: str
    # The request-target as received (origin-form path, or absolute URL from an explicit-proxy client; HTTP/2's :path)
    target: str
    authority: str  # Host header (or the absolute-form authority; HTTP/2's :authority)
    protocol: str  # "HTTP/1.1", "HTTP/1.0" or "HTTP/2"
    headers: dict[str, str]  # lowercase names; repeated headers joined with ", "
    peer: tuple[str, int]  # the downstream address
    # The route's: the span's name (`reviews.default.svc.cluster.local:9080/*`, Istio's route decorator),
    # the upstream cluster (`outbound|9080||reviews.default.svc.cluster.local`, `inbound|9080||`), and
    # whether the route carries the decorator (a Service's route; not a passthrough to an unknown host).
    operation: str
    cluster: str
    decorated: bool = True

    def __init__(self, method: str, target: str, authority: str, protocol: str, headers: dict[str, str],
                 peer: tuple[str, int], operation: str, cluster: str, decorated: bool = True) -> None:
        self.method = method
        self.target = target
        self.authority = authority
        self.protocol = protocol
        self.headers = headers
        self.peer = peer
        self.operation = operation
        self.cluster = cluster
        self.decorated = decorated

    def __reduce__(self) -> tuple[type[Any], tuple[object, ...]]:
        return rebuilt_from_fields(self)


@dataclass(slots=True)
class ResponseFacts:
    status: int  # what the downstream received (the proxy's own 503/504 on upstream failure); 0: none sent
    request_size: int  # body bytes
    response_size: int  # body bytes
    response_flags: str  # "-" when clean, else Envoy's codes ("UF", "UT", "UH", "URX", "DC", "UC", comma-joined)
    upstream: tuple[str, int] | None  # the address connected to, if any
    # The response's grpc-status and grpc-message values as received (grpc-message still percent-encoded, as
    # Envoy's span tags carry it): the trailers' or, for a trailers-only response, the headers'; None: absent.
    grpc_status: str | None = None
    grpc_message: str | None = None

    def __init__(self, status: int, request_size: int, response_size: int, response_flags: str,
                 upstream: tuple[str, int] | None, grpc_status: str | None = None,
                 grpc_message: str | None = None) -> None:
        self.status = status
        self.request_size = request_size
        self.response_size = response_size
        self.response_flags = response_flags
        self.upstream = upstream
        self.grpc_status = grpc_status
        self.grpc_message = grpc_message

    def __reduce__(self) -> tuple[type[Any], tuple[object, ...]]:
        return rebuilt_from_fields(self)
