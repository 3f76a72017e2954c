"""The proxy config document (shared with the operator, which compiles and pushes it)."""

from tracemesh_sidecar.config.fields import ConfigError
from tracemesh_sidecar.config.model import (
    BatchConfig,
    CustomTag,
    DiscoveryConfig,
    InboundConfig,
    InboundPort,
    Listeners,
    NodeIdentity,
    OutboundConfig,
    ProviderConfig,
    ProxyConfig,
    ServiceEntry,
    TracingConfig,
    TracingPolicy,
    dump_proxy_config,
    parse_proxy_config,
)

__all__ = [
    "BatchConfig",
    "ConfigError",
    "CustomTag",
    "DiscoveryConfig",
    "InboundConfig",
    "InboundPort",
    "Listeners",
    "NodeIdentity",
    "OutboundConfig",
    "ProviderConfig",
    "ProxyConfig",
    "ServiceEntry",
    "TracingConfig",
    "TracingPolicy",
    "dump_proxy_config",
    "parse_proxy_config",
]
