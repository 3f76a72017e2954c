"""Subscribes to the operator's config push (port 15010) and hands every new config to the proxy.

The loop never ends on its own and never crashes: an unreachable operator means the last
config stays in force and the client resubscribes with capped exponential backoff and
jitter (so 1000 sidecars do not reconnect in lockstep after an operator restart); a
document that does not parse is rejected (logged, reported back as a nack in the next poll)
and the last good config stays in force.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
from collections.abc import Awaitable, Callable

import aiohttp

from tracemesh_sidecar.backoff import jittered_backoff
from tracemesh_sidecar.config import ConfigError, ProxyConfig, parse_proxy_config
from tracemesh_sidecar.stats import Stats

log = logging.getLogger(__name__)

ApplyConfig = Callable[[ProxyConfig], Awaitable[None] | None]

BACKOFF_BASE_S = 0.5
DEFAULT_WAIT_S = 30.0
# How long past the server's long-poll wait a silent connection is given before it counts as dead.
WAIT_SLACK_S = 15.0
MAX_ERROR_CHARS = 500


class PushUnavailable(Exception):
    """The operator could not be reached or did not answer like a config push server."""


class DiscoveryClient:
    def __init__(self, address: str, namespace: str, pod_name: str, apply: ApplyConfig, stats: Stats, *,
                 max_backoff_s: float = 30.0, wait_s: float = DEFAULT_WAIT_S,
                 session: aiohttp.ClientSession | None = None,
                 rand: Callable[[], float] = random.random) -> None:
        self._url = f"http://{address}/v1/proxy-config/{namespace}/{pod_name}"
        self._namespace = namespace
        self._pod_name = pod_name
        self._apply = apply
        self._stats = stats
        self._max_backoff_s = max_backoff_s
        self._wait_s = wait_s
        self._session = session
        self._rand = rand
        self._received: str | None = None  # last version received, applied or rejected
        self._wake = asyncio.Event()
        self.version_in_force: str | None = None
        self.last_error: str | None = None

    async def run(self) -> None:
        """Subscribes until cancelled."""
        if self._session is not None:
            await self._run(self._session)
            return
        async with aiohttp.ClientSession() as session:
            await self._run(session)

    async def _run(self, session: aiohttp.ClientSession) -> None:
        failures = 0
        while True:
            try:
                await self.poll_once(session)
                failures = 0
                self._stats.set_gauge("discovery.connected", 1)
            except PushUnavailable as error:
                self._stats.set_gauge("discovery.connected", 0)
                self._stats.inc("discovery.connect_failures")
                delay = jittered_backoff(failures, BACKOFF_BASE_S, self._max_backoff_s, self._rand)
                failures += 1
                log.warning("config push unavailable (%s); keeping version %s, resubscribing in %.1fs",
                            error, self.version_in_force or "bootstrap", delay)
                await self._backoff(delay)

    def resubscribe_now(self) -> None:
        """Cuts a backoff wait short (the proxy's SIGHUP)."""
        self._wake.set()

    async def _backoff(self, delay_s: float) -> None:
        try:
            async with asyncio.timeout(delay_s):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def poll_once(self, session: aiohttp.ClientSession) -> bool:
        """One long-poll; True when it brought a config that is now in force."""
        params = {"version": self._received or "", "applied": self.version_in_force or "",
                  "wait": f"{self._wait_s:g}s"}
        if self.last_error:
            params["error"] = self.last_error[:MAX_ERROR_CHARS]
        timeout = aiohttp.ClientTimeout(total=self._wait_s + WAIT_SLACK_S, connect=5.0)
        try:
            async with session.get(self._url, params=params, timeout=timeout) as response:
                if response.status == 304:
                    return False
                if response.status != 200:
                    text = (await response.text(errors="replace"))[:200].strip()
                    raise PushUnavailable(f"{self._url} answered {response.status}: {text}")
                body = await response.read()
                header_version = response.headers.get("X-Tracemesh-Version")
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise PushUnavailable(f"{self._url}: {error!r}") from None
        return await self._take(body, header_version)

    async def _take(self, body: bytes, header_version: str | None) -> bool:
        try:
            config = self._check_node(parse_proxy_config(json.loads(body)))
        except (ValueError, ConfigError) as error:  # JSONDecodeError and ConfigError are ValueErrors
            return self._reject(header_version, f"config rejected: {error}")
        self._received = config.version
        try:
            result = self._apply(config)
            if inspect.isawaitable(result):
                await result
        except Exception as error:  # a failing apply must not end the subscription
            log.exception("applying config version %s failed", config.version)
            return self._reject(config.version, f"config apply failed: {error}")
        self.version_in_force = config.version
        self.last_error = None
        self._stats.inc("discovery.configs_applied")
        self._stats.set_gauge("discovery.version_in_force", _numeric(config.version))
        log.info("config version %s in force", config.version)
        return True

    def _check_node(self, config: ProxyConfig) -> ProxyConfig:
        if (config.node.namespace, config.node.pod_name) != (self._namespace, self._pod_name):
            raise ConfigError("node", f"is {config.node.namespace}/{config.node.pod_name}, "
                              f"not this sidecar's pod {self._namespace}/{self._pod_name}",
                              "the operator must push each pod its own config")
        return config

    def _reject(self, version: str | None, message: str) -> bool:
        """Keeps the config in force; the next poll reports `message` (the nack)."""
        self.last_error = message
        self._stats.inc("discovery.configs_rejected")
        log.error("%s; keeping version %s", message, self.version_in_force or "bootstrap")
        if not version:
            # Nothing to tell the server we have seen: it would answer with the same document at once.
            raise PushUnavailable("the server sent a config without a version")
        # The next poll names the rejected version, so it waits for a newer one instead of refetching it.
        self._received = version
        return False


def _numeric(version: str) -> float:
    return float(version) if version.isdigit() else 0.0
