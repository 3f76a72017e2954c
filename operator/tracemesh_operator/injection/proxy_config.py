"""The pod's ProxyConfig at injection, as Istio resolves it: the MeshConfig's `defaultConfig`, overlaid
with the pod's `proxy.istio.io/config` annotation (pkg/config/mesh/mesh.go MergeProxyConfig: fields
replaced, `proxyMetadata` merged key by key).

What injection does with it, as Istio's template does (injection-template.yaml):
- `PROXY_CONFIG`: the whole document, as JSON, in the proxy's environment (the sidecar reads
  `terminationDrainDuration` from it: tracemesh_sidecar/proxy/termination.py);
- `proxyMetadata`: each entry an environment variable of the proxy (EXIT_ON_ZERO_ACTIVE_CONNECTIONS,
  MINIMUM_DRAIN_DURATION...);
- `holdApplicationUntilProxyStarts` (without native sidecars): the proxy first among the containers,
  with a postStart hook that returns once it is ready (pkg/kube/inject/webhook.go reorderPod).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from tracemesh_sidecar.config import ConfigError
from tracemesh_sidecar.durations import UNITS_HELP, parse_duration_s

PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"
_DURATIONS = ("terminationDrainDuration", "drainDuration")


@dataclass(frozen=True, slots=True)
class PodProxyConfig:
    document: Mapping[str, Any]
    hold_application: bool
    metadata: tuple[tuple[str, str], ...]  # proxyMetadata, sorted by name (Go's template ranges maps so)

    @property
    def json(self) -> str:
        return json.dumps(self.document, separators=(",", ":"), sort_keys=True)


def pod_proxy_config(mesh_default_config: Mapping[str, Any], annotations: Mapping[str, Any],
                     hold_by_default: bool = False) -> PodProxyConfig:
    """Raises ConfigError naming the annotation (or the MeshConfig field) when a value is malformed.

    `hold_by_default` is Istio's `values.global.proxy.holdApplicationUntilProxyStarts`, or'ed in as reorderPod does.
    """
    mesh = _checked(dict(mesh_default_config), "spec.defaultConfig")
    text = annotations.get(PROXY_CONFIG_ANNOTATION)
    overlay: dict[str, Any] = {}
    if text is not None:
        where = f"metadata.annotations[{PROXY_CONFIG_ANNOTATION!r}]"
        try:
            parsed = yaml.safe_load(str(text))
        except yaml.YAMLError as error:
            raise ConfigError(where, f"is not YAML or JSON ({error})",
                              'write a ProxyConfig, e.g. {"terminationDrainDuration": "10s"}') from None
        if parsed is not None and not isinstance(parsed, Mapping):
            raise ConfigError(where, "is not a mapping",
                              'write a ProxyConfig, e.g. {"terminationDrainDuration": "10s"}')
        overlay = _checked(dict(parsed or {}), where)
    metadata = {**mesh.get("proxyMetadata", {}), **overlay.get("proxyMetadata", {})}
    document = {**mesh, **overlay}
    if metadata:
        document["proxyMetadata"] = metadata
    hold = bool(document.get("holdApplicationUntilProxyStarts", False)) or hold_by_default
    return PodProxyConfig(document, hold, tuple(sorted(metadata.items())))


def _checked(document: dict[str, Any], where: str) -> dict[str, Any]:
    """The fields injection reads, checked; the others are passed on in PROXY_CONFIG as they are."""
    for name in _DURATIONS:
        if name in document:
            try:
                parse_duration_s(str(document[name]))
            except ValueError:
                raise ConfigError(f"{where}.{name}", f"is {document[name]!r}, not a duration",
                                  f"write {UNITS_HELP}") from None
    hold = document.get("holdApplicationUntilProxyStarts")
    if hold is not None and not isinstance(hold, bool):
        raise ConfigError(f"{where}.holdApplicationUntilProxyStarts", f"is {hold!r}", "write true or false")
    metadata = document.get("proxyMetadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not all(isinstance(value, str) for value in metadata.values()):
            raise ConfigError(f"{where}.proxyMetadata", "is not a map of strings",
                              'write e.g. {EXIT_ON_ZERO_ACTIVE_CONNECTIONS: "true"} (quote every value)')
        document["proxyMetadata"] = {str(name): value for name, value in metadata.items()}
    return document
