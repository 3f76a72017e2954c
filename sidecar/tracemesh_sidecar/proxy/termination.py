"""How the sidecar ends on SIGTERM, as Istio's pilot-agent ends Envoy (pkg/envoy/agent.go terminate()).

pilot-agent asks Envoy for `drain_listeners?inboundonly&graceful` (pkg/envoy/admin.go): inbound
connections are discouraged (HTTP/1.1 responses carry `connection: close`) while the outbound
listener goes on serving the app, which may still be finishing its work. Then it waits:
- `terminationDrainDuration` (ProxyConfig, default 5s: pkg/config/mesh/mesh.go), then ends Envoy;
- or, with EXIT_ON_ZERO_ACTIVE_CONNECTIONS=true, MINIMUM_DRAIN_DURATION (default 5s) and then
  every second until no downstream connection is active (there is no other bound: the kubelet's
  SIGKILL at the end of the pod's grace period is).

The settings reach the proxy as Istio's reach pilot-agent: the injected container's environment,
PROXY_CONFIG (the pod's ProxyConfig as JSON, resolved at injection from the MeshConfig's
defaultConfig and the pod's `proxy.istio.io/config` annotation) and the proxyMetadata variables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from tracemesh_sidecar.config.fields import ConfigError
from tracemesh_sidecar.durations import UNITS_HELP, parse_duration_s

ENV_PROXY_CONFIG: Final = "PROXY_CONFIG"
ENV_EXIT_ON_ZERO_ACTIVE_CONNECTIONS: Final = "EXIT_ON_ZERO_ACTIVE_CONNECTIONS"
ENV_MINIMUM_DRAIN_DURATION: Final = "MINIMUM_DRAIN_DURATION"
DEFAULT_TERMINATION_DRAIN_S: Final = 5.0  # pkg/config/mesh/mesh.go DefaultProxyConfig
DEFAULT_MINIMUM_DRAIN_S: Final = 5.0  # pilot/cmd/pilot-agent/options/options.go minimumDrainDurationEnv
ACTIVE_CONNECTION_CHECK_S: Final = 1.0  # pkg/envoy/agent.go activeConnectionCheckDelay
# Go's strconv.ParseBool, as Istio's env.Register reads booleans.
_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})


@dataclass(frozen=True, slots=True)
class DrainPlan:
    termination_drain_s: float = DEFAULT_TERMINATION_DRAIN_S
    exit_on_zero_active_connections: bool = False
    minimum_drain_s: float = DEFAULT_MINIMUM_DRAIN_S

    def describe(self) -> str:
        if self.exit_on_zero_active_connections:
            return (f"at least {self.minimum_drain_s:g}s, then until no connection is active "
                    f"({ENV_EXIT_ON_ZERO_ACTIVE_CONNECTIONS})")
        return f"{self.termination_drain_s:g}s (terminationDrainDuration)"


def drain_plan(environ: Mapping[str, str]) -> DrainPlan:
    """The plan the container's environment gives; ConfigError naming the variable when one is malformed."""
    drain_s = DEFAULT_TERMINATION_DRAIN_S
    proxy_config_text = environ.get(ENV_PROXY_CONFIG, "").strip()
    if proxy_config_text:
        try:
            proxy_config = json.loads(proxy_config_text)
        except ValueError as error:
            raise ConfigError(ENV_PROXY_CONFIG, f"is not JSON ({error})",
                              "set it to the pod's ProxyConfig as JSON, as injection does") from None
        if not isinstance(proxy_config, dict):
            raise ConfigError(ENV_PROXY_CONFIG, "is not a JSON object", "set it to the pod's ProxyConfig as JSON")
        value = proxy_config.get("terminationDrainDuration")
        if value is not None:
            drain_s = _duration(f"{ENV_PROXY_CONFIG}.terminationDrainDuration", value)
    minimum_s = DEFAULT_MINIMUM_DRAIN_S
    if ENV_MINIMUM_DRAIN_DURATION in environ:
        minimum_s = _duration(ENV_MINIMUM_DRAIN_DURATION, environ[ENV_MINIMUM_DRAIN_DURATION])
    exit_on_zero = False
    flag = environ.get(ENV_EXIT_ON_ZERO_ACTIVE_CONNECTIONS)
    if flag is not None and flag != "":
        if flag not in _TRUE | _FALSE:
            raise ConfigError(ENV_EXIT_ON_ZERO_ACTIVE_CONNECTIONS, f"is {flag!r}", 'set it to "true" or "false"')
        exit_on_zero = flag in _TRUE
    return DrainPlan(drain_s, exit_on_zero, minimum_s)


def _duration(field: str, value: object) -> float:
    """A protobuf JSON Duration ("5s", "0.5s") or a Go duration ("1m30s"); seconds."""
    try:
        seconds = parse_duration_s(str(value))
    except ValueError:
        raise ConfigError(field, f"is {value!r}, not a duration", f"write {UNITS_HELP}") from None
    return seconds
