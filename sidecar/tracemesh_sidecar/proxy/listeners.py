"""The proxy's data-path listeners: which ones a config asks for, and one bound listener each."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Literal

from tracemesh_sidecar.config.model import ProxyConfig
from tracemesh_sidecar.proxy.downstream import DownstreamConnection
from tracemesh_sidecar.proxy.state import DirectionContext, DownstreamSession, ListenerKind
from tracemesh_sidecar.proxy.upstream import UpstreamPool
from tracemesh_sidecar.stats import Stats

log = logging.getLogger("tracemesh.proxy")

Direction = Literal["inbound", "outbound"]


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    kind: ListenerKind
    address: str  # host:port
    service_port: int | None = None  # inbound-port: the service port it fronts
    route_table: str | None = None  # gateway: the route table it serves

    @property
    def direction(self) -> Direction:
        # A gateway's traffic is outbound traffic, as Istio's gateway listeners are.
        return "inbound" if self.kind in ("inbound-capture", "inbound-port") else "outbound"


def listener_specs(config: ProxyConfig) -> list[ListenerSpec]:
    specs = []
    sidecar = config.proxy_type == "sidecar"  # a router has no capture: only its gateway listeners
    if config.listeners.outbound and sidecar:
        specs.append(ListenerSpec("outbound", config.listeners.outbound))
    if config.listeners.inbound and sidecar:
        specs.append(ListenerSpec("inbound-capture", config.listeners.inbound))
    for entry in config.inbound.ports:
        if entry.listen:
            specs.append(ListenerSpec("inbound-port", entry.listen, entry.port))
    if config.gateway is not None:
        specs.extend(ListenerSpec("gateway", gateway.address, route_table=gateway.route_table)
                     for gateway in config.gateway.listeners)
    return specs


def split_address(address: str) -> tuple[str, int]:
    """`host:port` (port 0: any free port, for tests) -> (host, port); the config parser has checked it."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class ConnectionBook:
    """Open downstream connections, per direction: the active-connection gauges and shutdown drain."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.open: set[DownstreamSession] = set()
        self._active = {"inbound": 0, "outbound": 0}
        self._closed = asyncio.Event()
        self._draining: set[Direction] = set()

    @property
    def active(self) -> int:
        """Open downstream connections of both directions (Envoy's listener.*.downstream_cx_active summed)."""
        return len(self.open)

    def opened(self, direction: Direction, conn: DownstreamSession) -> None:
        self.open.add(conn)
        self._active[direction] += 1
        self.stats.set_gauge(f"{direction}.downstream_cx_active", self._active[direction])
        if direction in self._draining:
            conn.discourage()

    def discourage(self, direction: Direction) -> None:
        """Envoy's drain manager for `direction`: from now on each of its connections answers the request in
        progress, or its next one, with `connection: close` and then closes; none is cut."""
        self._draining.add(direction)
        for conn in list(self.open):
            if conn.listener.direction == direction:
                conn.discourage()

    def closed(self, direction: Direction, conn: DownstreamSession) -> None:
        if conn in self.open:
            self.open.discard(conn)
            self._active[direction] -= 1
            self.stats.set_gauge(f"{direction}.downstream_cx_active", self._active[direction])
        if not self.open:
            self._closed.set()

    def replaced(self, old: DownstreamSession, new: DownstreamSession) -> None:
        """A connection changed protocol (HTTP/1 handed over to HTTP/2): the same connection, counted once."""
        if old in self.open:
            self.open.discard(old)
            self.open.add(new)
            if new.listener.direction in self._draining:
                new.discourage()

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
                if self.open:
                    log.warning("%d connections still open after %gs; closing them", len(self.open), timeout_s)
        for conn in list(self.open):
            conn.abort()


class Listener:
    """One bound data-path listener; connections read the config in force from `contexts` per request."""

    def __init__(self, spec: ListenerSpec, contexts: dict[str, DirectionContext], book: ConnectionBook,
                 pool: UpstreamPool) -> None:
        self.spec = spec
        self.pool = pool  # HTTP/1.1 upstream connections, for the HTTP/1.1 exchanges of its connections
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
        # Through Any: uvloop's `sockets` is a list where typeshed says tuple, and compiled code checks the type.
        server: Any = self._server
        return int(server.sockets[0].getsockname()[1])

    def stop_accepting(self) -> None:
        """Established connections stay; only new ones are refused."""
        if self._server is not None:
            self._server.close()
            self._server = None

    @property
    def route_table(self) -> str | None:
        return self.spec.route_table

    def context(self) -> DirectionContext:
        return self._contexts[self.direction]

    def count(self, name: str) -> None:
        stat = self._names.get(name)
        if stat is None:
            stat = self._names[name] = f"{self.direction}.{name}"
        self._stats.inc(stat)

    def connection_opened(self, conn: DownstreamSession) -> None:
        self._stats.inc(self._cx_total)
        self._book.opened(self.direction, conn)

    def connection_replaced(self, old: DownstreamSession, new: DownstreamSession) -> None:
        self._book.replaced(old, new)

    def connection_closed(self, conn: DownstreamSession) -> None:
        self._book.closed(self.direction, conn)
