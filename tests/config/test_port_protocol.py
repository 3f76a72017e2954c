"""A Service port's protocol as Istio selects it, the upstream HTTP version it implies, and the document's
`protocol` keys of outbound services and inbound ports."""

from __future__ import annotations

from typing import Any

import pytest

from tracemesh_sidecar.config import ConfigError, dump_proxy_config, parse_proxy_config
from tracemesh_sidecar.config.protocol import PROTOCOLS, UNSUPPORTED, port_protocol, upstream_http2

NODE = {"podName": "reviews-v2-abc", "namespace": "default", "canonicalService": "reviews"}


# Istio's TestConvertProtocol cases (pkg/config/kube/conversion_test.go), each with its name there:
# (port, port name, Service protocol, appProtocol) -> protocol.Instance.
@pytest.mark.parametrize(("port", "name", "service_protocol", "app_protocol", "expected"), [
    pytest.param(0, "", "", None, "UnsupportedProtocol", id="resolves empty"),
    pytest.param(0, "", "UDP", None, "UDP", id="resolves from protocol directly"),
    pytest.param(0, "http-something", "", None, "HTTP", id="resolves from port name"),
    pytest.param(0, "http-something", "", "https", "HTTPS", id="prefers appProto over portName"),
    pytest.param(0, "something-httpx", "", "https", "HTTPS", id="resolves from appProto"),
    pytest.param(0, "grpc-web-x", "", None, "GRPC-Web", id="resolves grpc-web"),
    pytest.param(0, "grpcweb-x", "", None, "UnsupportedProtocol", id="makes sure grpc-web is not resolved incorrectly"),
    pytest.param(3306, "random-name", "", None, "TCP", id="resolves based on known ports"),
    pytest.param(3306, "random-name", "", "kubernetes.io/h2c", "HTTP2", id="standard app protocol"),
])
def test_istio_convert_protocol_cases(port: int, name: str, service_protocol: str, app_protocol: str | None,
                                      expected: str) -> None:
    assert port_protocol(name, app_protocol, service_protocol, port=port) == expected


@pytest.mark.parametrize(("name", "app_protocol", "expected"), [
    ("grpc", None, "GRPC"),
    ("GRPC-Web", None, "GRPC-Web"),  # conversion.go compares the grpc-web prefix with EqualFold
    ("http2-foo", None, "HTTP2"),
    ("Http2", None, "HTTP2"),  # protocol.Parse ignores case
    ("http", "grpc", "GRPC"),  # appProtocol wins over the port name
    ("grpc", "http", "HTTP"),
    ("http", "", "UnsupportedProtocol"),  # a set but empty appProtocol replaces the name (Go's non-nil pointer)
    ("tcp-db", None, "TCP"),
    ("mongo", None, "Mongo"),
    ("redis-main", None, "Redis"),
    ("mysql", None, "MySQL"),
    ("tls-x", None, "TLS"),
    ("http_proxy", None, "HTTP_PROXY"),
    ("h2c", None, "UnsupportedProtocol"),
    ("web", "kubernetes.io/ws", "HTTP"),
    ("web", "kubernetes.io/wss", "HTTPS"),
    ("kubernetes.io/h2c", None, "UnsupportedProtocol"),  # the standard names count in appProtocol only
    (None, None, "UnsupportedProtocol"),
])
def test_app_protocol_then_port_name_prefix(name: str | None, app_protocol: str | None, expected: str) -> None:
    assert port_protocol(name, app_protocol) == expected


def test_udp_wins_over_any_name_and_sctp_is_read_by_name() -> None:
    assert port_protocol("http", "grpc", "UDP") == "UDP"
    assert port_protocol("http", None, "SCTP") == "HTTP"  # ConvertProtocol special-cases UDP only
    assert port_protocol("http", None, None) == "HTTP"


@pytest.mark.parametrize("port", [25, 53, 3306, 27017])
def test_well_known_ports_are_tcp_unless_named(port: int) -> None:
    assert port_protocol("", None, port=port) == "TCP"
    assert port_protocol("http", None, port=port) == "HTTP"
    assert port_protocol("", None, port=8080) == UNSUPPORTED


# cluster_builder.go setUpstreamProtocol: IsHTTP2 -> HTTP/2; explicit HTTP -> HTTP/1.1; otherwise (a sniffed port
# on a sidecar) use_downstream_protocol.
@pytest.mark.parametrize(("protocol", "http2"), [
    ("HTTP2", True), ("GRPC", True), ("GRPC-Web", True),
    ("HTTP", False), ("HTTP_PROXY", False),
    ("", None), ("UnsupportedProtocol", None), ("TCP", None), ("HTTPS", None), ("TLS", None), ("Redis", None),
])
def test_upstream_http_version_per_protocol(protocol: str, http2: bool | None) -> None:
    assert upstream_http2(protocol) is http2


def _document(service: dict[str, Any], port: dict[str, Any]) -> dict[str, Any]:
    return {"node": NODE, "inbound": {"ports": [port]},
            "outbound": {"services": [{"host": "reviews.default.svc.cluster.local", "port": 9080,
                                       "endpoints": ["10.0.0.1:9080"], **service}]}}


def test_protocol_keys_are_read_dumped_and_read_back() -> None:
    config = parse_proxy_config(_document({"protocol": "GRPC"}, {"port": 9080, "protocol": "HTTP2"}))
    assert config.outbound.services[0].protocol == "GRPC"
    assert config.inbound.ports[0].protocol == "HTTP2"
    dumped = dump_proxy_config(config)
    assert dumped["outbound"]["services"][0]["protocol"] == "GRPC"
    assert dumped["inbound"]["ports"][0]["protocol"] == "HTTP2"
    assert parse_proxy_config(dumped) == config


def test_an_undeclared_protocol_is_empty_and_left_out_of_the_dump() -> None:
    config = parse_proxy_config(_document({}, {"port": 9080}))
    assert config.outbound.services[0].protocol == ""
    assert config.inbound.ports[0].protocol == ""
    dumped = dump_proxy_config(config)
    assert "protocol" not in dumped["outbound"]["services"][0]
    assert "protocol" not in dumped["inbound"]["ports"][0]


@pytest.mark.parametrize(("service", "port", "field", "value"), [
    ({"protocol": "grpc"}, {"port": 9080}, "outbound.services[0].protocol", "'grpc'"),
    ({}, {"port": 9080, "protocol": "UnsupportedProtocol"}, "inbound.ports[0].protocol", "'UnsupportedProtocol'"),
    ({}, {"port": 9080, "protocol": "HBONE"}, "inbound.ports[0].protocol", "'HBONE'"),
])
def test_an_unknown_protocol_names_the_field_and_the_accepted_values(
        service: dict[str, Any], port: dict[str, Any], field: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_proxy_config(_document(service, port))
    assert raised.value.field == field
    assert value in raised.value.problem
    assert all(protocol in raised.value.fix for protocol in PROTOCOLS)
