"""The inbound port's Service naming and the node's tracing service name in the proxy config document."""

from __future__ import annotations

from typing import Any

import pytest

from tracemesh_sidecar.config import ConfigError, InboundPort, dump_proxy_config, parse_proxy_config


def document(port: dict[str, Any], **node: Any) -> dict[str, Any]:
    return {"node": {"podName": "server-1", "namespace": "default", "canonicalService": "server", **node},
            "inbound": {"ports": [port]}}


def test_service_naming_reads_and_writes_back() -> None:
    config = parse_proxy_config(document(
        {"port": 8090, "serviceHost": "server.default.svc.cluster.local", "servicePort": 80},
        tracingServiceName="server-app.default"))
    assert config.inbound.ports == (InboundPort(8090, 8090, service_host="server.default.svc.cluster.local",
                                                service_port=80),)
    assert config.node.service_name == "server-app.default"
    assert parse_proxy_config(dump_proxy_config(config)) == config


@pytest.mark.parametrize(("port", "operation"), [
    ({"port": 8090, "serviceHost": "server.default.svc.cluster.local", "servicePort": 80},
     "server.default.svc.cluster.local:80/*"),
    ({"port": 8090, "serviceHost": "server.default.svc.cluster.local"}, "server.default.svc.cluster.local:8090/*"),
    ({"port": 8090}, "server.default.svc.cluster.local:8090/*"),  # no Service: the node's own host
])
def test_operation_names_the_service_and_its_port(port: dict[str, Any], operation: str) -> None:
    config = parse_proxy_config(document(port))
    assert config.inbound.ports[0].operation(config.node.own_host) == operation


def test_a_service_port_without_its_host_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"inbound\.ports\[0\]\.servicePort.*serviceHost"):
        parse_proxy_config(document({"port": 8090, "servicePort": 80}))


def test_the_tracing_service_name_defaults_to_canonical_service_dot_namespace() -> None:
    assert parse_proxy_config(document({"port": 8090})).node.service_name == "server.default"
