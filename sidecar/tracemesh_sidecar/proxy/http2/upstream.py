"""HTTP/2 connections to upstreams (h2c with prior knowledge) and the pool that multiplexes streams over them.

A connection carries up to the peer's MAX_CONCURRENT_STREAMS streams at once; the pool hands out one
with room, or opens one (requests that arrive while it is being opened share the connect). Each
stream's events go to its owner through the `UpstreamOwner` seam; a GOAWAY tells the owners of
the streams it did not process, which may be sent again on another connection. A connection idle for
the pool's idle timeout is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import h2.errors
import h2.events
import h2.exceptions

from tracemesh_sidecar.proxy.http2.endpoint import Http2Endpoint
from tracemesh_sidecar.proxy.seams import HeaderList, Key, UpstreamOwner
from tracemesh_sidecar.proxy.tcp import set_nodelay
from tracemesh_sidecar.stats import Stats

log = logging.getLogger("tracemesh.proxy")



class Http2UpstreamConnection(Http2Endpoint, asyncio.Protocol):
    def __init__(self, pool: Http2Pool, key: Key) -> None:
        super().__init__(client_side=True)
        self.pool = pool
        self.key = key
        self.owners: dict[int, UpstreamOwner] = {}
        self.closed = False
        self.going_away = False  # GOAWAY received: no new streams
        self.idle_since = 0.0
        self.local: tuple[str, int] | None = None

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._attach(transport)
        set_nodelay(transport)
        local = transport.get_extra_info("sockname")
        self.local = (local[0], local[1]) if isinstance(local, tuple) else None
        self.idle_since = asyncio.get_running_loop().time()
        self.h2.initiate_connection()
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.receive(data)
        except h2.exceptions.ProtocolError as error:
            log.info("upstream %s:%d broke HTTP/2: %s", self.key[0], self.key[1], error)
            self.flush_now()
            owners, self.owners = self.owners, {}
            for owner in owners.values():
                owner.upstream_malformed(str(error))
            self.close()
            return
        touched: list[UpstreamOwner] = []
        for event in events:
            told = self._dispatch(event)
            if told is not None and told not in touched:
                touched.append(told)
        self.flush_now()  # as the client connection does: an upstream that does not read stops being read
        for told in touched:  # what this read produced leaves in one write per client connection
            told.read_done()

    def _dispatch(self, event: h2.events.Event) -> UpstreamOwner | None:
        """Tell the stream's owner; returns it (None for connection-level events)."""
        if isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self.window_opened(getattr(event, "stream_id", 0) or 0)
            return None
        if isinstance(event, h2.events.ConnectionTerminated):
            self.going_away = True
            last = event.last_stream_id if event.last_stream_id is not None else 0
            for stream_id in [sid for sid in self.owners if sid > last]:
                self.owners.pop(stream_id).upstream_lost(unprocessed=True)
            if not self.owners:
                self.close()
            return None
        stream_id = getattr(event, "stream_id", None) or 0
        if isinstance(event, h2.events.DataReceived):
            owner = self.owners.get(stream_id)
            if owner is None:
                self.acknowledge(stream_id, event.flow_controlled_length or 0)
                return None
            ended = event.stream_ended is not None
            if ended:  # END_STREAM on this frame: the owner hears it with the data; the StreamEnded is moot
                self._stream_over(stream_id)
            owner.response_data(event.data or b"", event.flow_controlled_length or 0, ended)
            return owner
        if isinstance(event, h2.events.ResponseReceived):
            owner = self.owners.get(stream_id)
            if owner is not None:
                ended = event.stream_ended is not None
                if ended:
                    self._stream_over(stream_id)
                owner.response_headers(list(event.headers or ()), ended)
            return owner
        if isinstance(event, h2.events.TrailersReceived):
            owner = self.owners.get(stream_id)
            if owner is not None:
                self._stream_over(stream_id)
                owner.response_trailers(list(event.headers or ()))
            return owner
        if isinstance(event, h2.events.StreamEnded):
            owner = self._stream_over(stream_id)
            if owner is not None:
                owner.response_ended()
            return owner
        if isinstance(event, h2.events.StreamReset):
            owner = self._stream_over(stream_id)
            if owner is not None:
                code = int(event.error_code or 0)
                if code == h2.errors.ErrorCodes.REFUSED_STREAM:
                    owner.upstream_lost(unprocessed=True)  # RFC 9113 8.7: refused streams were not processed
                else:
                    owner.upstream_reset(code)
            return owner
        # InformationalResponseReceived (1xx): not relayed over HTTP/2 (Envoy relays only 100-continue).
        return None

    def _stream_over(self, stream_id: int) -> UpstreamOwner | None:
        """The stream is done with (the response is complete, or reset): its owner, if it still had one."""
        owner = self.owners.pop(stream_id, None)
        self.forget(stream_id)
        self._maybe_idle()
        return owner

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.connection_closed(self)
        self._lose_all(unprocessed=False)

    # -- used by the pool and the streams
    def has_room(self) -> bool:
        return (not self.closed and not self.going_away and self.transport is not None
                and not self.transport.is_closing()
                and len(self.owners) < self.h2.remote_settings.max_concurrent_streams)

    def open_stream(self, headers: HeaderList, end_stream: bool, owner: UpstreamOwner) -> Http2UpstreamStream:
        stream_id: int = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, headers, end_stream=end_stream)
        self.owners[stream_id] = owner
        self.flush()
        return Http2UpstreamStream(self, stream_id)

    def cancel(self, stream_id: int) -> None:
        """The downstream gave up: reset the stream (CANCEL, as Envoy does)."""
        if self.owners.pop(stream_id, None) is not None:
            self.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            self.flush()
        self._maybe_idle()

    def _data_left(self, stream_id: int, size: int) -> None:
        owner = self.owners.get(stream_id)
        if owner is not None:
            owner.request_data_left(size)

    def _lose_all(self, unprocessed: bool) -> None:
        owners, self.owners = self.owners, {}
        for owner in owners.values():
            owner.upstream_lost(unprocessed)

    def _maybe_idle(self) -> None:
        if not self.owners:
            if self.going_away:
                self.close()
            else:
                self.idle_since = asyncio.get_running_loop().time()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(h2.exceptions.ProtocolError):  # already closing
                self.h2.close_connection()
            self.flush_now()
            self.transport.close()


class Http2UpstreamStream:
    """One stream to an upstream, as the relay sees it (seams.UpstreamStream)."""

    __slots__ = ("_conn", "_stream_id")

    def __init__(self, conn: Http2UpstreamConnection, stream_id: int) -> None:
        self._conn = conn
        self._stream_id = stream_id

    @property
    def local(self) -> tuple[str, int] | None:
        return self._conn.local

    def send_data(self, data: bytes, end_stream: bool) -> None:
        self._conn.send_data(self._stream_id, data, end_stream)

    def send_trailers(self, trailers: HeaderList) -> None:
        self._conn.send_trailers(self._stream_id, trailers)

    def acknowledge(self, size: int) -> None:
        self._conn.acknowledge(self._stream_id, size)

    def flush(self) -> None:
        self._conn.flush()

    def cancel(self) -> None:
        self._conn.cancel(self._stream_id)


class Http2Pool:
    """HTTP/2 connections per endpoint, shared by all streams to it (the relay's seams.StreamOpener for HTTP/2)."""

    def __init__(self, stats: Stats, idle_timeout_s: float = 30.0) -> None:
        self._stats = stats
        self._connections: dict[Key, list[Http2UpstreamConnection]] = {}
        self._connecting: dict[Key, asyncio.Future[Http2UpstreamConnection]] = {}
        self._idle_timeout_s = idle_timeout_s
        self._sweeper: asyncio.TimerHandle | None = None

    def take(self, key: Key) -> Http2UpstreamConnection | None:
        """A connection to `key` with room for one more stream, if one is open."""
        for connection in self._connections.get(key, ()):
            if connection.has_room():
                return connection
        return None

    def open_now(self, key: Key, headers: HeaderList, end_stream: bool,
                 owner: UpstreamOwner) -> Http2UpstreamStream | None:
        connection = self.take(key)
        return None if connection is None else connection.open_stream(headers, end_stream, owner)

    async def open(self, key: Key, timeout_s: float, headers: HeaderList, end_stream: bool,
                   owner: UpstreamOwner) -> Http2UpstreamStream:
        connection = await self.connect(key, timeout_s)
        return connection.open_stream(headers, end_stream, owner)

    async def connect(self, key: Key, timeout_s: float) -> Http2UpstreamConnection:
        """A connection with room: an open one, the one being opened, or a new one. Raises OSError or
        TimeoutError as the HTTP/1 pool does."""
        while True:
            connection = self.take(key)
            if connection is not None:
                return connection
            pending = self._connecting.get(key)
            if pending is None:
                break
            await asyncio.shield(pending)  # its failure is this request's too
        future: asyncio.Future[Http2UpstreamConnection] = asyncio.get_running_loop().create_future()
        self._connecting[key] = future
        try:
            connection = await self._open(key, timeout_s)
        except (OSError, TimeoutError) as error:
            future.set_exception(error)
            future.exception()  # retrieved: waiters re-raise it, none may be left to
            raise
        finally:
            self._connecting.pop(key, None)
        future.set_result(connection)
        return connection

    async def _open(self, key: Key, timeout_s: float) -> Http2UpstreamConnection:
        loop = asyncio.get_running_loop()
        self._stats.inc("upstream.cx_total")
        self._stats.inc("upstream.cx_http2_total")
        try:
            async with asyncio.timeout(timeout_s):
                _, connection = await loop.create_connection(lambda: Http2UpstreamConnection(self, key), *key)
        except (OSError, TimeoutError):
            self._stats.inc("upstream.cx_connect_fail")
            raise
        self._connections.setdefault(key, []).append(connection)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._idle_timeout_s, self._sweep)
        return connection

    def connection_closed(self, connection: Http2UpstreamConnection) -> None:
        connections = self._connections.get(connection.key)
        if connections and connection in connections:
            connections.remove(connection)
            if not connections:
                del self._connections[connection.key]

    def close_idle(self) -> None:
        for connections in list(self._connections.values()):
            for connection in list(connections):
                if not connection.owners:
                    connection.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _sweep(self) -> None:
        self._sweeper = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() - self._idle_timeout_s
        for connections in list(self._connections.values()):
            for connection in list(connections):
                if not connection.owners and connection.idle_since < deadline:
                    connection.close()
        if self._connections:
            self._sweeper = loop.call_later(self._idle_timeout_s / 2, self._sweep)
