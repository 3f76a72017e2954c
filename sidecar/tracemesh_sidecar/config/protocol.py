"""A Service port's protocol, as Istio selects it, and the HTTP version the proxy speaks upstream for it. Pure.

The protocol strings are Istio's protocol.Instance values (pkg/config/protocol/instance.go); the selection from a
Kubernetes Service port is Istio's ConvertProtocol (pkg/config/kube/conversion.go); the upstream HTTP version per
protocol is Istio's ClusterBuilder.setUpstreamProtocol (pilot/pkg/networking/core/cluster_builder.go).
"""

from __future__ import annotations

from typing import Final

GRPC: Final = "GRPC"
GRPC_WEB: Final = "GRPC-Web"
HTTP: Final = "HTTP"
HTTP_PROXY: Final = "HTTP_PROXY"
HTTP2: Final = "HTTP2"
HTTPS: Final = "HTTPS"
TCP: Final = "TCP"
TLS: Final = "TLS"
UDP: Final = "UDP"
MONGO: Final = "Mongo"
REDIS: Final = "Redis"
MYSQL: Final = "MySQL"
# Istio's protocol.Unsupported: nothing declared, so the sidecar sniffs the protocol (auto-detection).
UNSUPPORTED: Final = "UnsupportedProtocol"

# What a Service port can declare (protocol.Parse's results; HBONE and DoubleHBONE are Istio-internal).
PROTOCOLS: Final = (TCP, UDP, GRPC, GRPC_WEB, HTTP, HTTP_PROXY, HTTP2, HTTPS, TLS, MONGO, REDIS, MYSQL)
_BY_LOWER_NAME: Final = {protocol.lower(): protocol for protocol in PROTOCOLS}

# Kubernetes' standard appProtocol names, honoured only in appProtocol (a port name cannot hold a `/`).
_KUBERNETES_APP_PROTOCOLS: Final = {"kubernetes.io/h2c": HTTP2, "kubernetes.io/ws": HTTP, "kubernetes.io/wss": HTTPS}
# Ports whose undeclared protocol is TCP, not sniffed: their servers speak first or break under sniffing
# (SMTP, DNS, MySQL, MongoDB: conversion.go wellKnownPorts).
_WELL_KNOWN_TCP_PORTS: Final = frozenset({25, 53, 3306, 27017})


def _parse(text: str) -> str:
    """Istio's protocol.Parse: a protocol name in any case, else UNSUPPORTED."""
    return _BY_LOWER_NAME.get(text.lower(), UNSUPPORTED)


def port_protocol(name: str | None, app_protocol: str | None, service_protocol: str | None = "TCP", *,
                  port: int = 0) -> str:
    """The protocol of a Kubernetes Service port (`name`, `appProtocol`, `protocol`, `port`), as Istio's
    ConvertProtocol: UDP for a UDP port; else appProtocol when set, otherwise the port name's prefix before the
    first `-` (`grpc-web` as a whole); UNSUPPORTED (sniffed) when neither names a protocol, except on the
    well-known ports (TCP)."""
    if service_protocol == UDP:
        return UDP
    text = name or ""
    if app_protocol is not None:
        text = app_protocol
        standard = _KUBERNETES_APP_PROTOCOLS.get(text)
        if standard is not None:
            return standard
    # Before the prefix split below, since "grpc-web" holds a hyphen itself.
    if text[:len(GRPC_WEB)].lower() == GRPC_WEB.lower():
        return GRPC_WEB
    protocol = _parse(text.partition("-")[0])
    if protocol == UNSUPPORTED and port in _WELL_KNOWN_TCP_PORTS:
        return TCP
    return protocol


def upstream_http2(protocol: str) -> bool | None:
    """Whether the proxy speaks HTTP/2 to the upstream of a port with this protocol, as setUpstreamProtocol
    decides: True for the HTTP/2 protocols (HTTP2, GRPC, GRPC-Web), False for the other explicit HTTP ones (HTTP/1.1),
    None for the rest, an undeclared ("" or UNSUPPORTED) port's included: the downstream's version then
    (Envoy's use_downstream_protocol, which Istio sets on a sidecar's clusters of sniffed ports)."""
    if protocol in (HTTP2, GRPC, GRPC_WEB):  # Istio's Instance.IsHTTP2
        return True
    if protocol in (HTTP, HTTP_PROXY):  # the rest of Instance.IsHTTP
        return False
    return None
