"""An HTTP/1.1 request to an upstream on a pooled connection, for the relay (seams.UpstreamStream).

The relay speaks HTTP/2's header lists; this translates at the edge, as Envoy's HTTP/1 codec does for a
request that came over HTTP/2 to an upstream whose port says `http` (Istio's explicit HTTP/1.1): the
request line and Host from the pseudo-headers, a body of unknown length chunked, trailers dropped (HTTP/1.1
peers rarely take them), the response's head as a header list with `:status`. TCP is this direction's
flow control: response bytes the client has not taken past RESPONSE_WINDOW pause reading the upstream.
"""

from __future__ import annotations

import logging
from typing import Final

import httptools

from tracemesh_sidecar.proxy import headers as h
from tracemesh_sidecar.proxy.seams import HeaderList, Key, UpstreamOwner
from tracemesh_sidecar.proxy.upstream import UpstreamConnection, UpstreamPool

log = logging.getLogger("tracemesh.proxy")

RESPONSE_WINDOW: Final = 65535  # as an HTTP/2 stream's: what a relayed response may hold before the upstream waits
_NOT_FORWARDED: Final = frozenset({b"host", b"te", b"http2-settings", *(name.encode() for name in h.HOP_BY_HOP)})


class Http1UpstreamStream:
    __slots__ = ("_chunked", "_conn", "_ended", "_head_only", "_headers", "_left_held", "_owner", "_pool",
                 "_request_done", "_reused", "_status", "_unacknowledged", "_until_eof", "_write_paused")

    def __init__(self, pool: UpstreamPool, conn: UpstreamConnection, headers: HeaderList, end_stream: bool,
                 owner: UpstreamOwner, reused: bool) -> None:
        self._pool = pool
        self._conn = conn
        self._owner = owner
        self._reused = reused
        self._headers: HeaderList = []
        self._status = 0
        self._ended = False  # the response is complete (or given up)
        self._request_done = end_stream
        self._until_eof = False
        self._unacknowledged = 0
        self._left_held = 0  # request bytes written while the upstream's socket buffer was full
        self._write_paused = False
        method = path = authority = b""
        lines: list[bytes] = []
        content_length = False
        for name, value in headers:
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            elif name[:1] != b":" and name not in _NOT_FORWARDED:
                content_length = content_length or name == b"content-length"
                lines += (name, b": ", value, h.CRLF)
        self._head_only = method == b"HEAD"  # the parser cannot know a HEAD response has no body
        self._chunked = not end_stream and not content_length
        framing = b"transfer-encoding: chunked\r\n" if self._chunked else b""
        conn.attach(self, httptools.HttpResponseParser(self), self)
        early = conn.take_early()
        assert conn.transport is not None
        conn.transport.write(b"".join((method, b" ", path, b" HTTP/1.1\r\nhost: ", authority, h.CRLF, *lines,
                                       framing, h.CRLF)))
        for data in early:  # bytes sent before the request: read as its response, which the parser then judges
            conn.data_received(data)

    # -- seams.UpstreamStream
    @property
    def local(self) -> tuple[str, int] | None:
        return self._conn.local

    def send_data(self, data: bytes, end_stream: bool) -> None:
        transport = self._conn.transport
        if self._ended or transport is None or transport.is_closing():
            return
        if self._chunked:
            if data:
                transport.writelines(h.chunked(data))
            if end_stream:
                transport.write(h.LAST_CHUNK)
        elif data:
            transport.write(data)
        self._request_done = self._request_done or end_stream
        if data:
            if self._write_paused:
                self._left_held += len(data)
            else:
                self._owner.request_data_left(len(data))

    def send_trailers(self, trailers: HeaderList) -> None:
        self.send_data(b"", end_stream=True)

    def acknowledge(self, size: int) -> None:
        self._unacknowledged -= size
        if self._unacknowledged <= RESPONSE_WINDOW:
            self._conn.resume_reading()

    def flush(self) -> None:
        """Writes go out as they are made."""

    def read_done(self) -> None:
        self._owner.read_done()

    def cancel(self) -> None:
        if not self._ended:
            self._ended = True
            self._conn.detach()
            self._conn.close()

    # -- upstream.FlowControlled: the upstream's socket buffer
    def pause_reading_for_upstream(self) -> None:
        """Its buffer is full: request bytes written from now on are acknowledged once it drains."""
        self._write_paused = True

    def resume_reading_for_upstream(self) -> None:
        self._write_paused = False
        held, self._left_held = self._left_held, 0
        if held and not self._ended:
            self._owner.request_data_left(held)

    # -- upstream.ResponseReader
    def upstream_upgraded(self, rest: bytes) -> None:
        self._malformed("an upgrade nobody asked for")

    def upstream_malformed(self, error: Exception) -> None:
        self._malformed(str(error))

    def upstream_lost(self, upstream: UpstreamConnection) -> None:
        if self._ended:
            return
        if self._until_eof and self._status:  # the body of this response ended with the connection
            self._ended = True
            self._owner.response_ended()
            return
        self._ended = True
        # A reused connection closed before any answer: its peer's keep-alive race, the request unprocessed.
        self._owner.upstream_lost(unprocessed=self._reused and not self._status)

    # -- httptools' callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))
        if len(self._headers) > h.MAX_HEADERS:
            raise httptools.HttpParserError("a response head of over 100 headers")

    def on_headers_complete(self) -> None:
        parser = self._conn.parser
        headers, self._headers = self._headers, []
        status: int = parser.get_status_code()
        if status < 200:  # interim (100 Continue, 103 Early Hints): not relayed across versions
            return
        self._status = status
        scanned = h.response_headers(headers)
        self._until_eof = not scanned.chunked and not scanned.has_length and status not in (204, 304)
        out = [(b":status", str(status).encode())]
        out += [(name, value) for name, value in headers if name not in _NOT_FORWARDED]
        if self._head_only:
            self._ended = True
            self._conn.detach()
            self._conn.close()
        self._owner.response_headers(out, ended=self._head_only)

    def on_body(self, data: bytes) -> None:
        if self._ended:
            return
        self._unacknowledged += len(data)
        if self._unacknowledged > RESPONSE_WINDOW:
            self._conn.pause_reading()
        self._owner.response_data(data, len(data), end_stream=False)

    def on_message_complete(self) -> None:
        if not self._status or self._ended:  # an interim response's end, or one given up
            return
        self._ended = True
        conn = self._conn
        reusable = self._request_done and conn.parser.should_keep_alive() and not conn.closed
        conn.detach()
        if reusable:
            self._pool.give(conn)
        else:
            conn.close()
        self._owner.response_ended()

    def _malformed(self, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        self._conn.detach()
        self._conn.close()
        self._owner.upstream_malformed(reason)


class Http1StreamOpener:
    """The relay's seams.StreamOpener for HTTP/1.1 upstreams, over the HTTP/1.1 connection pool."""

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool

    def open_now(self, key: Key, headers: HeaderList, end_stream: bool,
                 owner: UpstreamOwner) -> Http1UpstreamStream | None:
        conn = self._pool.take(key)
        return None if conn is None else Http1UpstreamStream(self._pool, conn, headers, end_stream, owner, True)

    async def open(self, key: Key, timeout_s: float, headers: HeaderList, end_stream: bool,
                   owner: UpstreamOwner) -> Http1UpstreamStream:
        conn = await self._pool.connect(key, timeout_s)
        return Http1UpstreamStream(self._pool, conn, headers, end_stream, owner, False)
