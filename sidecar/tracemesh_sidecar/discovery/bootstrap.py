"""The config a sidecar runs before its first push, built from what injection put in the pod.

Injection (tracemesh_operator.injection.mutation) sets these environment variables; the
names are the contract between the two, listed once here:

    POD_NAME, POD_NAMESPACE, INSTANCE_IP, SERVICE_ACCOUNT   downward API
    TRACEMESH_CANONICAL_SERVICE, TRACEMESH_CANONICAL_REVISION
    TRACEMESH_LABELS      the pod's labels at admission, a JSON object
    TRACEMESH_APP_PORTS   the application's ports the proxy fronts, comma-separated

Tracing stays off until the operator pushes the compiled config: a sidecar that cannot yet
know its Telemetry must not report spans to a provider nobody configured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from tracemesh_sidecar.config import (
    ConfigError,
    DiscoveryConfig,
    GatewayConfig,
    InboundConfig,
    InboundPort,
    NodeIdentity,
    ProxyConfig,
    TracingConfig,
    TracingPolicy,
)
from tracemesh_sidecar.config.model import ProxyType, check_host_port
from tracemesh_sidecar.iptables.spec import parse_ports

ENV_POD_NAME = "POD_NAME"
ENV_NAMESPACE = "POD_NAMESPACE"
ENV_POD_IP = "INSTANCE_IP"
ENV_SERVICE_ACCOUNT = "SERVICE_ACCOUNT"
ENV_CANONICAL_SERVICE = "TRACEMESH_CANONICAL_SERVICE"
ENV_CANONICAL_REVISION = "TRACEMESH_CANONICAL_REVISION"
ENV_LABELS = "TRACEMESH_LABELS"
ENV_APP_PORTS = "TRACEMESH_APP_PORTS"

_TRACING_OFF = TracingPolicy(enabled=False)


def bootstrap_config(environ: Mapping[str, str], discovery_address: str,
                     proxy_type: ProxyType = "sidecar") -> ProxyConfig:
    """Raises ConfigError naming the environment variable and the fix when one is missing or wrong.

    A router (`tracemesh proxy router`) starts with no gateway listener: its routes come with the push."""
    check_host_port(discovery_address, "--discovery")
    node = NodeIdentity(
        pod_name=_required(environ, ENV_POD_NAME),
        namespace=_required(environ, ENV_NAMESPACE),
        pod_ip=environ.get(ENV_POD_IP) or "127.0.0.1",
        canonical_service=_required(environ, ENV_CANONICAL_SERVICE),
        canonical_revision=environ.get(ENV_CANONICAL_REVISION) or "latest",
        service_account=environ.get(ENV_SERVICE_ACCOUNT) or "default",
        labels=_labels(environ.get(ENV_LABELS, "")),
    )
    app_ports = parse_ports(environ.get(ENV_APP_PORTS, ""), f"env {ENV_APP_PORTS}")
    ports = tuple(InboundPort(port=port, app_port=port) for port in app_ports)
    return ProxyConfig(
        node=node,
        version="0",
        proxy_type=proxy_type,
        gateway=GatewayConfig(()) if proxy_type == "router" else None,
        inbound=InboundConfig(ports=ports),
        tracing=TracingConfig(client=_TRACING_OFF, server=_TRACING_OFF),
        discovery=DiscoveryConfig(address=discovery_address),
    )


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"env {name}", "is not set",
                          "run the proxy in a pod injected by tracemesh, or set it by hand")
    return value


def _labels(text: str) -> dict[str, str]:
    if not text.strip():
        return {}
    try:
        labels = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"env {ENV_LABELS}", f"is not JSON ({error})",
                          'write it as a JSON object, e.g. {"app": "reviews"}') from None
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ConfigError(f"env {ENV_LABELS}", "is not a JSON object of strings",
                          'write it as a JSON object, e.g. {"app": "reviews"}')
    return {str(key): value for key, value in labels.items()}
