"""The config source of an injected sidecar: `tracemesh proxy --discovery ADDR --bootstrap-env`.

Same shape as the file source (`load`, `watch`, `trigger`) so the proxy runs either: the
first config comes from the pod's environment (or from `--config FILE`), every later one
from the operator's push.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from tracemesh_sidecar.config import ProxyConfig
from tracemesh_sidecar.config.loader import load_proxy_config
from tracemesh_sidecar.config.model import ProxyType
from tracemesh_sidecar.discovery.bootstrap import bootstrap_config
from tracemesh_sidecar.discovery.client import DiscoveryClient
from tracemesh_sidecar.stats import Stats


class DiscoveryConfigSource:
    def __init__(self, address: str, apply: Callable[[ProxyConfig], Awaitable[None]], stats: Stats, *,
                 config_path: str | Path | None = None, environ: Mapping[str, str] = os.environ,
                 proxy_type: ProxyType = "sidecar") -> None:
        self._address = address
        self._apply = apply
        self._stats = stats
        self._config_path = config_path
        self._environ = environ
        self._proxy_type = proxy_type
        self.client: DiscoveryClient | None = None

    def load(self) -> ProxyConfig:
        """The first config (raises ConfigError naming the variable or field: there is no older one to keep)."""
        if self._config_path is not None:
            config = load_proxy_config(Path(self._config_path))
        else:
            config = bootstrap_config(self._environ, self._address, self._proxy_type)
        max_backoff_s = config.discovery.resubscribe_max_backoff_s if config.discovery else 30.0
        self.client = DiscoveryClient(self._address, config.node.namespace, config.node.pod_name, self._apply,
                                      self._stats, max_backoff_s=max_backoff_s)
        return config

    def trigger(self) -> None:
        """SIGHUP: resubscribe now rather than at the end of the backoff."""
        if self.client is not None:
            self.client.resubscribe_now()

    async def watch(self) -> None:
        if self.client is None:
            raise RuntimeError("load() the first config before watch()")
        await self.client.run()
