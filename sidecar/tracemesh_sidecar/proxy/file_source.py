"""A config source that watches a file: `tracemesh proxy --config FILE`.

Polls the file's identity (mtime, size, inode) every `poll_interval_s` and re-reads it on
SIGHUP (`trigger()`). A file that fails to parse is logged with its ConfigError (field and
fix) and the config in force stays; an unchanged document is not re-applied. Other sources
(the discovery client) call the same `apply` coroutine.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from tracemesh_sidecar.config.fields import ConfigError
from tracemesh_sidecar.config.loader import load_proxy_config
from tracemesh_sidecar.config.model import ProxyConfig

log = logging.getLogger("tracemesh.proxy")

Apply = Callable[[ProxyConfig], Awaitable[None]]


class FileConfigSource:
    def __init__(self, path: str | Path, apply: Apply, poll_interval_s: float = 0.2) -> None:
        self.path = Path(path)
        self._apply = apply
        self._poll_interval_s = poll_interval_s
        self._identity: tuple[int, int, int] | None = None
        self._current: ProxyConfig | None = None
        self._wake = asyncio.Event()

    def load(self) -> ProxyConfig:
        """The first read (raises ConfigError: there is no older config to keep)."""
        self._identity = self._stat()
        config = load_proxy_config(self.path)
        self._current = config
        return config

    def trigger(self) -> None:
        """Re-read now (SIGHUP)."""
        self._identity = None
        self._wake.set()

    async def watch(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._poll_interval_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            identity = self._stat()
            if identity is None or identity == self._identity:
                continue
            self._identity = identity
            await self._reload()

    async def _reload(self) -> None:
        try:
            config = load_proxy_config(self.path)
        except ConfigError as error:
            version = self._current.version if self._current is not None else "none"
            log.error("config %s rejected, version %s stays in force: %s", self.path, version, error)
            return
        if config == self._current:
            return
        try:
            await self._apply(config)
        except OSError as error:
            log.error("config %s version %s not applied: %s", self.path, config.version, error)
            return
        except Exception:  # the watcher must outlive any one bad config
            log.exception("config %s version %s not applied", self.path, config.version)
            return
        self._current = config

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino
