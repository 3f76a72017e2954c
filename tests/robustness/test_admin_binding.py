"""The admin port (config_dump, stats) answers on 127.0.0.1 only, whatever the config asks for."""

from __future__ import annotations

import pytest
from proxy_harness import server_config
from robust_harness import ProxyProcess, free_port, listening_hosts

from tracemesh_sidecar.config.fields import ConfigError
from tracemesh_sidecar.config.model import InboundConfig, InboundPort, dump_proxy_config, parse_proxy_config


def test_the_running_proxys_admin_port_listens_on_loopback_only(proxy: ProxyProcess) -> None:
    assert listening_hosts(proxy.admin_port) == {"127.0.0.1"}


def test_an_admin_address_on_all_interfaces_is_refused() -> None:
    document = dump_proxy_config(server_config(9, inbound=InboundConfig(ports=(InboundPort(port=9080, app_port=9),))))
    document["listeners"] = {"admin": f"0.0.0.0:{free_port()}", "outbound": "off", "inbound": "off",
                             "health": "off", "prometheus": "off"}
    with pytest.raises(ConfigError, match=r"listeners\.admin: .*127\.0\.0\.1:15000"):
        parse_proxy_config(document)
