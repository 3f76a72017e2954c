"""The proxy's data-path listeners: which ones a config asks for, and one bound listener each."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal

from tracemesh_sidecar.config.model import ProxyConfig
from tracemesh_sidecar.proxy.downstream import DownstreamConnection
from tracemesh_sidecar.proxy.state import DirectionContext, ListenerKind
from tracemesh_sidecar.stats import Stats

log = logging.getLogger("tracemesh.proxy")

Direction = Literal["inbound", "outbound"]


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    kind: ListenerKind
    address: str  # host:port
    service_port: int | None = None  # inbound-port: the service port it fronts

    @property
    def direction(self) -> Direction:
        return "outbound" if self.kind == "outbound" else "inbound"


def listener_specs(config: ProxyConfig) -> list[ListenerSpec]:
    specs = []
    if config.listeners.outbound:
        specs.append(ListenerSpec("outbound", config.listeners.outbound))
    if config.listeners.inbound:
        specs.append(ListenerSpec("inbound-capture", config.listeners.inbound))
    for entry in config.inbound.ports:
        if entry.listen:
            specs.append(ListenerSpec("inbound-port", entry.listen, entry.port))
    return specs


def split_address(address: str) -> tuple[str, int]:
    """`host:port` (port 0: any free port, for tests) -> (host, port); the config parser has checked it."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class ConnectionBook:
    """Open downstream connections, per direction: the active-connection gauges and shutdown drain."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.open: set[DownstreamConnection] = set()
        self._active = {"inbound": 0, "outbound": 0}
        self._closed = asyncio.Event()

    def opened(self, direction: Direction, conn: DownstreamConnection) -> None:
        self.open.add(conn)
        self._active[direction] += 1
        self.stats.set_gauge(f"{direction}.downstream_cx_active", self._active[direction])

    def closed(self, direction: Direction, conn: DownstreamConnection) -> None:
        if conn in self.open:
            self.open.discard(conn)
            self._active[direction] -= 1
            self.stats.set_gauge(f"{direction}.downstream_cx_active", self._active[direction])
        if not self.open:
            self._closed.set()

    async def drain(self, timeout_s: float) -> None:
        """Let connections finish the response in progress; abort what is still open after `timeout_s`."""
        for conn in list(self.open):
            conn.drain()
        if self.open:
            self._closed.clear()
            try:
                async with asyncio.timeout(timeout_s):
                    while self.open:
                        await self._closed.wait()
                        self._closed.clear()
            except TimeoutError:
                log.warning("%d connections still open after %gs; closing them", len(self.open), timeout_s)
        for conn in list(self.open):
            conn.abort()


class Listener:
    """One bound data-path listener; connections read the config in force from `contexts` per request."""

    def __init__(self, spec: ListenerSpec, contexts: dict[str, DirectionContext], book: ConnectionBook) -> None:
        self.spec = spec
        self.kind = spec.kind
        self.direction = spec.direction
        self.service_port = spec.service_port
        self._contexts = contexts
        self._book = book
        self._stats = book.stats
        self._names: dict[str, str] = {}
        self._cx_total = f"{self.direction}.downstream_cx_total"
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        host, port = split_address(self.spec.address)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: DownstreamConnection(self), host, port,
                                                reuse_address=True, backlog=1024)

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def stop_accepting(self) -> None:
        """Established connections stay; only new ones are refused."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def context(self) -> DirectionContext:
        return self._contexts[self.direction]

    def count(self, name: str) -> None:
        stat = self._names.get(name)
        if stat is None:
            stat = self._names[name] = f"{self.direction}.{name}"
        self._stats.inc(stat)

    def connection_opened(self, conn: DownstreamConnection) -> None:
        self._stats.inc(self._cx_total)
        self._book.opened(self.direction, conn)

    def connection_closed(self, conn: DownstreamConnection) -> None:
        self._book.closed(self.direction, conn)
