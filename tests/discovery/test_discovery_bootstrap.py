"""The sidecar's first config, from the environment injection gives the pod."""

from __future__ import annotations

import pytest

from tracemesh_sidecar.config import ConfigError
from tracemesh_sidecar.discovery import bootstrap_config

ENV = {
    "POD_NAME": "productpage-v1-6b746f74dc-9stvs", "POD_NAMESPACE": "default", "INSTANCE_IP": "10.244.0.12",
    "SERVICE_ACCOUNT": "bookinfo-productpage", "TRACEMESH_CANONICAL_SERVICE": "productpage",
    "TRACEMESH_CANONICAL_REVISION": "v1", "TRACEMESH_LABELS": '{"app":"productpage","version":"v1"}',
    "TRACEMESH_APP_PORTS": "9080,9080,9443",
}
DISCOVERY = "tracemesh-discovery.istio-system.svc:15010"


def test_identity_ports_and_discovery_from_the_environment() -> None:
    config = bootstrap_config(ENV, DISCOVERY)
    node = config.node
    assert (node.pod_name, node.namespace, node.pod_ip, node.service_account) == (
        "productpage-v1-6b746f74dc-9stvs", "default", "10.244.0.12", "bookinfo-productpage")
    assert (node.service_name, node.canonical_revision) == ("productpage.default", "v1")
    assert node.labels == {"app": "productpage", "version": "v1"}
    assert [(p.port, p.app_port) for p in config.inbound.ports] == [(9080, 9080), (9443, 9443)]
    assert config.discovery is not None and config.discovery.address == DISCOVERY
    assert config.version == "0"


def test_tracing_is_off_until_the_first_push() -> None:
    tracing = bootstrap_config(ENV, DISCOVERY).tracing
    assert not tracing.client.enabled and not tracing.server.enabled
    assert tracing.client.provider is None


def test_optional_values_have_defaults() -> None:
    minimal = {key: ENV[key] for key in ("POD_NAME", "POD_NAMESPACE", "TRACEMESH_CANONICAL_SERVICE")}
    config = bootstrap_config(minimal, DISCOVERY)
    assert (config.node.pod_ip, config.node.canonical_revision, config.node.service_account) == (
        "127.0.0.1", "latest", "default")
    assert config.inbound.ports == () and config.node.labels == {}


@pytest.mark.parametrize(("change", "field", "problem"), [
    ({"POD_NAME": ""}, "env POD_NAME", "is not set"),
    ({"TRACEMESH_CANONICAL_SERVICE": " "}, "env TRACEMESH_CANONICAL_SERVICE", "is not set"),
    ({"TRACEMESH_LABELS": "{app"}, "env TRACEMESH_LABELS", "is not JSON"),
    ({"TRACEMESH_LABELS": '["app"]'}, "env TRACEMESH_LABELS", "not a JSON object"),
    ({"TRACEMESH_APP_PORTS": "9080,http"}, "env TRACEMESH_APP_PORTS", "'http', which is not a port"),
])
def test_bad_environment_names_the_variable(change: dict[str, str], field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        bootstrap_config({**ENV, **change}, DISCOVERY)
    assert caught.value.field == field
    assert problem in caught.value.problem


def test_bad_discovery_address_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="--discovery"):
        bootstrap_config(ENV, "tracemesh-discovery")
