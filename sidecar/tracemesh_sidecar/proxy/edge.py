"""The headers a gateway sets on what it forwards, as Envoy's connection manager does with
`use_remote_address: true` and no trusted hops (Istio's gateway listeners;
source/common/http/conn_manager_utility.cc mutateRequestHeaders, original_ip_detection/xff).

- `x-forwarded-for`: the peer's address appended;
- `x-forwarded-proto`: overwritten with the downstream scheme (no hop before is trusted);
- a peer with an internal address (RFC 1918, loopback, RFC 4193; Envoy's isInternalAddress) makes an
  internal request: `x-envoy-internal: true`; any other is an edge request: `x-envoy-external-address`
  is the peer, `x-envoy-internal` a client sent is dropped, and the request gets a fresh `x-request-id`
  (Envoy's force_set on edge requests; Istio does not preserve external request ids).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Final

from tracemesh_sidecar.tracing.ids import new_request_id
from tracemesh_sidecar.tracing.request_id import REQUEST_ID

FORWARDED_FOR: Final = "x-forwarded-for"
FORWARDED_PROTO: Final = "x-forwarded-proto"
EXTERNAL_ADDRESS: Final = "x-envoy-external-address"
INTERNAL: Final = "x-envoy-internal"
EDGE_HEADERS: Final = (FORWARDED_FOR, FORWARDED_PROTO, EXTERNAL_ADDRESS, INTERNAL)


def is_internal_address(address: str) -> bool:
    """Envoy's Network::Utility::isInternalAddress: 10/8, 172.16/12, 192.168/16, 127/8, fd00::/8, ::1."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return ip in _V4_INTERNAL[0] or ip in _V4_INTERNAL[1] or ip in _V4_INTERNAL[2] or ip.is_loopback
    return ip.is_loopback or ip in _V6_INTERNAL


_V4_INTERNAL: Final = (ipaddress.IPv4Network("10.0.0.0/8"), ipaddress.IPv4Network("172.16.0.0/12"),
                       ipaddress.IPv4Network("192.168.0.0/16"))
_V6_INTERNAL: Final = ipaddress.IPv6Network("fd00::/8")


def edge_headers(peer_ip: str, headers: Mapping[str, str], scheme: str = "http") -> list[tuple[str, str]]:
    """The headers to set on the forwarded request (each replaces any same-named one)."""
    forwarded = headers.get(FORWARDED_FOR)
    result = [(FORWARDED_FOR, f"{forwarded},{peer_ip}" if forwarded else peer_ip), (FORWARDED_PROTO, scheme)]
    if is_internal_address(peer_ip):
        result.append((INTERNAL, "true"))
    else:
        result.append((EXTERNAL_ADDRESS, peer_ip))
        result.append((REQUEST_ID, new_request_id()))
    return result


def edge_removals(peer_ip: str) -> frozenset[str]:
    """Headers a client may not pass through: an edge request's own claim to be internal."""
    return frozenset() if is_internal_address(peer_ip) else frozenset({INTERNAL})
