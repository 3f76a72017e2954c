"""ConfigHub: every pod's current proxy config, its version, and who is subscribed to it.

One asyncio.Event per pod key wakes exactly the subscribers of that pod when its config
changes (no polling loops), and each config is encoded to JSON once per version, however
many subscribers fetch it — what keeps a push to 1000 sidecars well under a second.

Versions are integers from one hub-wide counter seeded with the wall clock in milliseconds,
so they only grow, also across an operator restart: a sidecar that still holds a version
from the previous operator can never collide with a new one. Subscribers ask for "anything
other than the version I hold", not "anything greater", so even a clock stepped back cannot
strand a sidecar on an old config.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from tracemesh_sidecar.config import ProxyConfig, ServiceEntry, dump_proxy_config
from tracemesh_sidecar.config.model import dump_services

# A sidecar not seen for this long (no poll open, none recently ended) is dropped from connected().
FORGET_AFTER_S = 300.0
# A sidecar counts as connected while a poll is open or one ended this recently (it re-polls at once).
CONNECTED_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    """One row of `tracemesh proxy-status`."""

    pod_key: str
    peer: str
    version_sent: str | None  # the newest version the hub holds for the pod
    version_in_force: str | None  # what the sidecar says it runs (its ack)
    last_seen: float  # wall-clock seconds
    connected: bool
    error: str | None  # why the sidecar rejected the last config it received, if it did

    @property
    def synced(self) -> bool:
        return self.version_sent is not None and self.version_sent == self.version_in_force

    def to_dict(self) -> dict[str, object]:
        return {"pod": self.pod_key, "peer": self.peer, "versionSent": self.version_sent,
                "versionInForce": self.version_in_force, "lastSeen": self.last_seen,
                "connected": self.connected, "synced": self.synced, "error": self.error}


def _encode(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


# Stands in for `outbound.services` while a pod's own part of its document is encoded.
_SERVICES_MARK = "\u0000services\u0000"
_SERVICES_MARK_JSON = _encode(_SERVICES_MARK)
_SHARED_REGISTRIES = 4  # a registry is replaced whole on each change: the last few cover any transition


class _SharedServices:
    """The encoded `outbound.services` of the registry tuples in use, once each, not once per pod.

    Every pod's config holds the same registry tuple (the operator compiles it once), and at 500
    Services it is ~60 KB of JSON: encoded per pod it would be most of the operator's memory."""

    def __init__(self) -> None:
        self._encoded: dict[int, tuple[tuple[ServiceEntry, ...], bytes]] = {}

    def encoded(self, services: tuple[ServiceEntry, ...]) -> bytes:
        held = self._encoded.get(id(services))
        if held is not None and held[0] is services:
            return held[1]
        if len(self._encoded) >= _SHARED_REGISTRIES:
            del self._encoded[next(iter(self._encoded))]
        body = _encode(dump_services(services))
        self._encoded[id(services)] = (services, body)
        return body


class _Entry:
    __slots__ = ("_head", "_shared", "_tail", "config")

    def __init__(self, config: ProxyConfig, shared: _SharedServices) -> None:
        self.config = config
        self._shared = shared
        self._head: bytes | None = None
        self._tail = b""

    @property
    def parts(self) -> tuple[bytes, bytes, bytes]:
        """The JSON document in three pieces, written one after the other: the pod's own part, encoded on
        first fetch and kept for every subscriber of this version, around the registry all pods share."""
        if self._head is None:
            document = dump_proxy_config(replace(self.config, outbound=replace(self.config.outbound, services=())))
            document["outbound"]["services"] = _SERVICES_MARK
            # The first mark is ours: only node, listeners and inbound come before it, none of them free text.
            self._head, _, self._tail = _encode(document).partition(_SERVICES_MARK_JSON)
        return self._head, self._shared.encoded(self.config.outbound.services), self._tail


@dataclass(slots=True)
class _Subscriber:
    peer: str
    version_in_force: str | None
    error: str | None
    last_seen: float
    open_polls: int = 0


class ConfigHub:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._next_version = int(clock() * 1000)
        self._entries: dict[str, _Entry] = {}
        self._shared_services = _SharedServices()
        self._signals: dict[str, asyncio.Event] = {}
        self._subscribers: dict[str, _Subscriber] = {}

    def set(self, pod_key: str, config: ProxyConfig) -> ProxyConfig:
        """Holds `config` for the pod; bumps the version only when it differs. Returns the config in force."""
        entry = self._entries.get(pod_key)
        if entry is not None and config.with_version(entry.config.version) == entry.config:
            return entry.config
        self._next_version += 1
        versioned = config.with_version(str(self._next_version))
        self._entries[pod_key] = _Entry(versioned, self._shared_services)
        self._wake(pod_key)
        return versioned

    def remove(self, pod_key: str) -> None:
        self._entries.pop(pod_key, None)
        self._subscribers.pop(pod_key, None)
        self._wake(pod_key)

    def get(self, pod_key: str) -> ProxyConfig | None:
        entry = self._entries.get(pod_key)
        return entry.config if entry is not None else None

    def keys(self) -> list[str]:
        """The pods that have a config."""
        return list(self._entries)

    def encoded_parts(self, pod_key: str, config: ProxyConfig) -> tuple[bytes, bytes, bytes]:
        """The JSON document of `config` in pieces to write in turn (no per-pod copy of the shared registry),
        from the cache when it is the pod's current one."""
        entry = self._entries.get(pod_key)
        if entry is None or entry.config is not config:
            entry = _Entry(config, self._shared_services)
        return entry.parts

    def encoded(self, pod_key: str, config: ProxyConfig) -> bytes:
        """The JSON document of `config`, whole."""
        return b"".join(self.encoded_parts(pod_key, config))

    async def wait_newer(self, pod_key: str, version: str | None, timeout_s: float) -> ProxyConfig | None:
        """The pod's config once its version differs from `version` (at once if it already does); None on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            current = self.get(pod_key)
            if current is not None and current.version != version:
                return current
            signal = self._signals.get(pod_key)
            if signal is None:
                signal = self._signals[pod_key] = asyncio.Event()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(signal.wait(), remaining)
            except TimeoutError:
                return None

    def _wake(self, pod_key: str) -> None:
        # The event is retired once set: late waiters create a fresh one, so it never needs clearing.
        signal = self._signals.pop(pod_key, None)
        if signal is not None:
            signal.set()

    # -- subscriber bookkeeping (what proxy-status shows) ------------------------------------------

    def poll_started(self, pod_key: str, peer: str, version_in_force: str | None, error: str | None) -> None:
        subscriber = self._subscribers.get(pod_key)
        if subscriber is None:
            subscriber = self._subscribers[pod_key] = _Subscriber(peer, version_in_force, error, self._clock())
        subscriber.peer = peer
        subscriber.version_in_force = version_in_force
        subscriber.error = error
        subscriber.last_seen = self._clock()
        subscriber.open_polls += 1

    def poll_ended(self, pod_key: str) -> None:
        subscriber = self._subscribers.get(pod_key)
        if subscriber is not None:
            subscriber.open_polls = max(0, subscriber.open_polls - 1)
            subscriber.last_seen = self._clock()

    def connected(self) -> list[ProxyStatus]:
        now = self._clock()
        for key in [key for key, sub in self._subscribers.items()
                    if not sub.open_polls and now - sub.last_seen > FORGET_AFTER_S]:
            del self._subscribers[key]
        rows = []
        for key in sorted(self._subscribers):
            sub = self._subscribers[key]
            current = self.get(key)
            rows.append(ProxyStatus(
                pod_key=key, peer=sub.peer, version_sent=current.version if current else None,
                version_in_force=sub.version_in_force, last_seen=sub.last_seen,
                connected=sub.open_polls > 0 or now - sub.last_seen <= CONNECTED_GRACE_S, error=sub.error,
            ))
        return rows
