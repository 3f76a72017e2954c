"""Connections to upstreams (the app, or the called service) and the keep-alive pool that reuses them.

An UpstreamConnection is an asyncio.Protocol that hands what it reads to whoever owns it right
now: the Exchange whose response it carries (through that exchange's own response parser), or
the downstream transport of a tunnel. Idle in the pool it owns nothing; a peer that closes or
talks while idle gets the connection dropped from the pool. A fresh connection's first bytes
may arrive before its owner is attached (a server that speaks first: MySQL, SMTP, SSH greet at
once): they are held for the owner.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final, Protocol, cast

import httptools

from tracemesh_sidecar.proxy.seams import Key
from tracemesh_sidecar.proxy.tcp import set_nodelay
from tracemesh_sidecar.stats import Stats

log = logging.getLogger("tracemesh.proxy")

# A greeting held for the owner of a fresh connection; past this, reading pauses until it is attached.
EARLY_LIMIT: Final = 64 * 1024


class FlowControlled(Protocol):
    """The downstream side an upstream connection throttles when the upstream cannot keep up."""

    def pause_reading_for_upstream(self) -> None: ...

    def resume_reading_for_upstream(self) -> None: ...


class ResponseReader(Protocol):
    """Whoever reads the response on a connection now: an HTTP/1.1 exchange (exchange.py), or the relay's HTTP/1.1
    upstream stream (upstream_stream.py). Its response parser was given to the connection with it."""

    def upstream_upgraded(self, rest: bytes) -> None: ...

    def upstream_malformed(self, error: Exception) -> None: ...

    def read_done(self) -> None:
        """The parser is done with a read: write what it produced."""

    def upstream_lost(self, upstream: UpstreamConnection) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("answered", "closed", "early", "exchange", "feeding", "idle_since", "key", "local", "owner", "parser",
                 "pool", "reading_paused", "shared_parser", "transport")

    def __init__(self, pool: UpstreamPool, key: Key) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser: Any = None  # the owning exchange's HttpResponseParser
        self.exchange: ResponseReader | None = None
        self.answered = False  # bytes came for the reader attached now (a keep-alive race is told by their absence)
        self.owner: FlowControlled | None = None
        self.idle_since = 0.0
        self.closed = False
        self.reading_paused = False
        # Bytes that came before the first owner was attached; None once one was (see take_early).
        self.early: list[bytes] | None = []
        self.local: tuple[str, int] | None = None  # the socket's own address (access logs' UPSTREAM_LOCAL_ADDRESS)
        # The response parser the HTTP/1.1 exchanges on this connection take in turn (exchange.py says how), once one
        # made it; opaque here. A connection is given back once a response is complete, but bytes after it may
        # have begun another message: exchange.ResponseCallbacks tells. `feeding`: a read is being parsed; an
        # exchange attached meanwhile (a pipelined request, given this connection as the response before it
        # completed) takes a parser of its own, so that bytes after that response in the same read are never read
        # as its response.
        self.shared_parser: object | None = None
        self.feeding = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self.pool.connection_opened()
        set_nodelay(transport)
        local = transport.get_extra_info("sockname")
        self.local = (local[0], local[1]) if isinstance(local, tuple) else None

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            early = self.early
            if early is None:  # bytes from an idle upstream: it is confused, never reuse it
                self.close()
                return
            early.append(data)  # fresh, its owner not attached yet: a greeting, kept for the owner
            if sum(map(len, early)) > EARLY_LIMIT:
                self.pause_reading()
            return
        self.answered = True
        self.feeding = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            exchange.upstream_upgraded(data[upgrade.args[0]:])
        except httptools.HttpParserCallbackError:  # a bug of ours, not the upstream's
            self.shared_parser = None  # a parser that failed is never taken again
            log.exception("internal error relaying a response from %s:%d", *self.key)
            exchange.upstream_malformed(RuntimeError("internal error"))
        except httptools.HttpParserError as error:
            self.shared_parser = None
            exchange.upstream_malformed(error)
        self.feeding = False
        exchange.read_done()

    def eof_received(self) -> bool | None:
        return None  # close; connection_lost tells the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.connection_closed(self)
        if self.exchange is not None:
            self.exchange.upstream_lost(self)

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.pause_reading_for_upstream()

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.resume_reading_for_upstream()

    # -- used by exchanges, relays and tunnels
    def attach(self, reader: ResponseReader, parser: Any, owner: FlowControlled | None) -> None:
        """`reader` reads the response now, through `parser` (its own httptools parser); `owner` is throttled
        when this connection cannot take its writes."""
        self.exchange = reader
        self.parser = parser
        self.owner = owner
        self.answered = False

    def detach(self) -> None:
        """No one reads on this connection any more."""
        self.exchange = None
        self.owner = None
        self.parser = None

    def hand_over(self) -> tuple[asyncio.Transport, list[bytes]]:
        """For a tunnel: the transport (its protocol to be replaced), and what the upstream said first."""
        assert self.transport is not None
        self.detach()
        return self.transport, self.take_early()

    def released(self) -> None:
        """The tunnel that took the transport over has closed it."""
        if not self.closed:
            self.closed = True
            self.pool.connection_closed(self)

    def idle(self, since: float) -> None:
        """Back in the pool (at loop time `since`): no owner; bytes from the peer now mean a confused upstream."""
        self.exchange = self.owner = self.parser = self.early = None
        self.idle_since = since

    def take_early(self) -> list[bytes]:
        """The owner is attached: what the upstream sent before it (usually nothing). From now on,
        bytes with no owner mean a confused upstream."""
        early, self.early = self.early or [], None
        # Measured only when something came (rarely): from compiled code, sum and map are two generic calls (~1k
        # instructions), and this runs for every request that takes a connection.
        if early and sum(map(len, early)) > EARLY_LIMIT:  # data_received paused reading for it
            self.resume_reading()
        return early

    def pause_reading(self) -> None:
        transport = self.transport
        if not self.reading_paused and transport is not None and not self.closed and not transport.is_closing():
            self.reading_paused = True
            transport.pause_reading()

    def resume_reading(self) -> None:
        transport = self.transport
        if self.reading_paused and transport is not None and not self.closed and not transport.is_closing():
            self.reading_paused = False
            transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamPool:
    """Idle keep-alive connections per endpoint, newest first, each dropped after `idle_timeout_s`."""

    def __init__(self, stats: Stats, idle_timeout_s: float = 30.0, max_idle_per_endpoint: int = 128) -> None:
        self._stats = stats
        self._cx_reused = stats.counter("upstream.cx_reused")
        self._idle: dict[Key, list[UpstreamConnection]] = {}
        self._idle_timeout_s = idle_timeout_s
        self._max_idle = max_idle_per_endpoint
        self._sweeper: asyncio.TimerHandle | None = None
        self.open_connections = 0  # idle or busy
        # The loop it runs on, looked up once: asyncio.get_running_loop() is a getpid() syscall on Python 3.11,
        # and take() and give() run for every request.
        self._loop: asyncio.AbstractEventLoop | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def take(self, key: Key) -> UpstreamConnection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        deadline = self._running_loop().time() - self._idle_timeout_s
        while idle:
            connection = idle.pop()
            if connection.closed or connection.idle_since < deadline:
                connection.close()
                continue
            self._cx_reused.inc()
            return connection
        return None

    def give(self, connection: UpstreamConnection) -> None:
        loop = self._running_loop()
        connection.idle(loop.time())
        if connection.closed:
            return
        connection.resume_reading()  # an idle connection must notice its peer closing
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= self._max_idle:
            connection.close()
            return
        idle.append(connection)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._idle_timeout_s, self._sweep)

    def connection_opened(self) -> None:
        self.open_connections += 1
        self._stats.set_gauge("upstream.cx_active", self.open_connections)

    def connection_closed(self, connection: UpstreamConnection) -> None:
        self.open_connections -= 1
        self._stats.set_gauge("upstream.cx_active", self.open_connections)
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    async def connect(self, key: Key, timeout_s: float) -> UpstreamConnection:
        """A fresh connection; raises OSError (refused, unreachable, unresolvable) or TimeoutError."""
        loop = asyncio.get_running_loop()
        self._stats.inc("upstream.cx_total")
        try:
            async with asyncio.timeout(timeout_s):
                _, protocol = await loop.create_connection(lambda: UpstreamConnection(self, key), key[0], key[1])
        except (OSError, TimeoutError):
            self._stats.inc("upstream.cx_connect_fail")
            raise
        return protocol

    def idle_counts(self) -> dict[str, int]:
        return {f"{host}:{port}": len(idle) for (host, port), idle in self._idle.items() if idle}

    def close_idle(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _sweep(self) -> None:
        self._sweeper = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() - self._idle_timeout_s
        remaining = False
        for key, idle in list(self._idle.items()):
            keep = [connection for connection in idle if not connection.closed and connection.idle_since >= deadline]
            for connection in idle:
                if connection not in keep:
                    connection.close()
            if keep:
                self._idle[key] = keep
                remaining = True
            else:
                del self._idle[key]
        if remaining:
            self._sweeper = loop.call_later(self._idle_timeout_s / 2, self._sweep)
