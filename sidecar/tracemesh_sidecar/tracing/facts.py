"""What the proxy tells the tracing core about one request and its response (plain data, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Direction = Literal["inbound", "outbound"]


@dataclass(slots=True)
class RequestFacts:
    method: str
    # The request-target as received (origin-form path, or absolute URL from an explicit-proxy client; HTTP/2's :path)
    target: str
    authority: str  # Host header (or the absolute-form authority; HTTP/2's :authority)
    protocol: str  # "HTTP/1.1", "HTTP/1.0" or "HTTP/2"
    headers: Mapping[str, str]  # lowercase names; repeated headers joined with ", "
    peer: tuple[str, int]  # the downstream address
    # The route's: the span's name (`reviews.default.svc.cluster.local:9080/*`, Istio's route decorator),
    # the upstream cluster (`outbound|9080||reviews.default.svc.cluster.local`, `inbound|9080||`), and
    # whether the route carries the decorator (a Service's route; not a passthrough to an unknown host).
    operation: str
    cluster: str
    decorated: bool = True


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
