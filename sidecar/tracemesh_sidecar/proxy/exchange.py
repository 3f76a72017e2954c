"""One HTTP request/response through the proxy: routing, tracing, the upstream leg, failures.

Hot path. Everything here is driven by parser callbacks (httptools' C parser calls `on_*`
on this object for the upstream response) and by the downstream connection (request body,
request end, loss). No coroutine runs per request unless a new upstream connection must be
opened: a pooled connection is written to synchronously, and the response is relayed from
the parser callbacks to the downstream transport, one write per upstream read.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import TYPE_CHECKING

import httptools

from tracemesh_sidecar.proxy import headers as h
from tracemesh_sidecar.proxy.routing import Destination, split_absolute_target
from tracemesh_sidecar.proxy.tunnel import Tunnel
from tracemesh_sidecar.tracing.facts import RequestFacts, ResponseFacts

if TYPE_CHECKING:
    from tracemesh_sidecar.proxy.downstream import DownstreamConnection
    from tracemesh_sidecar.proxy.state import DirectionContext
    from tracemesh_sidecar.proxy.upstream import UpstreamConnection
    from tracemesh_sidecar.tracing import Hop

log = logging.getLogger("tracemesh.proxy")

# Request bytes kept so a request that met a pooled connection closed by its peer can be
# sent again on a fresh one; a request larger than this is not retried.
RETRY_BUFFER_LIMIT = 64 * 1024
# Request body held while the upstream connection is being opened, before reading pauses.
CONNECT_BUFFER_LIMIT = 256 * 1024

UF_BODY = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
UC_BODY = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
UH_BODY = "no healthy upstream"
UT_BODY = "upstream request timeout"
UPE_BODY = "upstream protocol error"
BAD_HOST_BODY = "bad request: an HTTP/1.1 request needs exactly one Host header"
CONNECT_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
_UPGRADE_TAIL = b"connection: upgrade\r\n"


def _now_us() -> int:
    return time.time_ns() // 1000


class Exchange:
    # Per-request state. The fields every request starts with the same value are class
    # attributes, so __init__ (once per request) sets only what differs; an assignment shadows
    # them per instance.
    ctx: DirectionContext | None = None
    hop: Hop | None = None
    destination: Destination | None = None
    authority = ""
    start_us = 0
    pending_size = 0
    sent_size = 0
    request_size = 0
    upstream: UpstreamConnection | None = None
    connect_task: asyncio.Task[None] | None = None
    reused = False
    retried = False
    timer: asyncio.TimerHandle | None = None
    status = 0
    response_begun = False  # any byte of a response arrived (set by the upstream connection)
    response_started = False  # our response head went downstream
    interim = False
    upgrading = False
    chunk_out = False
    until_eof = False
    response_size = 0
    finished = False
    declined_upgrade = False  # an `Upgrade: h2c` offer, forwarded as a plain request

    def __init__(self, conn: DownstreamConnection, method: bytes, target: bytes, version: str,
                 headers: list[h.Header], keep_alive: bool, upgrade: bool) -> None:
        self.conn = conn
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.upgrade = upgrade and method != b"CONNECT"
        if self.upgrade and h.offers_only_h2c(headers):
            # Envoy's way: drop the offer and proxy a plain HTTP/1.1 request (any body included), since
            # the upstream leg is HTTP/1.1 whatever the app would answer.
            self.upgrade = False
            self.declined_upgrade = True
        self.request_chunked = False
        has_body = False
        for lname, _, value in headers:
            if lname == "transfer-encoding" and b"chunked" in value.lower():
                self.request_chunked = has_body = True
            elif lname == "content-length" and value.strip() != b"0":
                has_body = True
        # A request without a body is complete with its head (knowing it now lets an early
        # local reply keep the connection open).
        self.request_done = not has_body
        # Bytes for the upstream not yet written (None once written straight through), and
        # everything sent so far for one retry (None when over RETRY_BUFFER_LIMIT).
        self.pending: list[bytes] | None = []
        self.sent: list[bytes] | None = []
        self.resp_headers: list[tuple[bytes, bytes]] = []
        # Response bytes produced while the parser runs, written in one go when it returns: the
        # head and the first body bytes usually leave in one send() instead of two.
        self.out: list[bytes] = []

    # ------------------------------------------------------------------ downstream side
    def request_body(self, data: bytes) -> None:
        self.request_size += len(data)
        if self.request_chunked:
            self._send(h.chunked(data))
        else:
            self._send((data,))

    def request_complete(self) -> None:
        self.request_done = True
        if self.request_chunked:
            self._send((h.LAST_CHUNK,))

    def _send(self, pieces: tuple[bytes, ...]) -> None:
        if self.finished:
            return
        sent = self.sent
        if sent is not None:
            self.sent_size += sum(map(len, pieces))
            if self.sent_size > RETRY_BUFFER_LIMIT:
                self.sent = None
            else:
                sent.extend(pieces)
        pending = self.pending
        if pending is None:
            upstream = self.upstream
            if upstream is not None and upstream.transport is not None and not upstream.closed:
                upstream.transport.writelines(pieces)
            return
        pending.extend(pieces)
        self.pending_size += sum(map(len, pieces))
        if self.pending_size > CONNECT_BUFFER_LIMIT:
            self.conn.pause_reading_for_buffer()

    def start(self, ctx: DirectionContext) -> None:
        """Route, open the hop's span, and send the head upstream (or answer locally)."""
        self.ctx = ctx
        self.start_us = _now_us()
        ctx.stats.inc(ctx.rq_total)
        conn = self.conn
        fields = h.header_fields(self.headers)
        target = self.target
        extra_host: str | None = None
        if self.method == b"CONNECT":
            self.authority = target.decode("latin-1")
            destination = ctx.route_connect(self.authority, conn)
        else:
            absolute = split_absolute_target(target)
            if absolute is not None:
                self.authority, target = absolute
                extra_host = self.authority
            else:
                host = fields.get("host")
                # RFC 9112 section 3.2: none in HTTP/1.1, or more than one (joined with ", "), is a 400: the
                # app could route on another Host than the one traced and routed here.
                if (host is None and self.version == "1.1") or (host is not None and "," in host):
                    self.keep_alive = False
                    self.fail(400, "DPE", BAD_HOST_BODY)
                    return
                self.authority = host or ""
            destination = ctx.route(self.authority, conn)
        self.destination = destination
        if self.method != b"CONNECT":
            operation, cluster = (destination.operation, destination.cluster) if destination else \
                ctx.unrouted(self.authority)
            self.hop = ctx.start_hop(RequestFacts(
                method=self.method.decode("latin-1"), target=self.target.decode("latin-1"),
                authority=self.authority, protocol=f"HTTP/{self.version}", headers=fields,
                peer=conn.peer, operation=operation, cluster=cluster,
                decorated=destination is not None and destination.decorated,
            ), self.start_us)
        if destination is None:
            self.fail(503, "UH", UH_BODY)
            return
        if ctx.request_timeout_s is not None:
            self.timer = asyncio.get_running_loop().call_later(ctx.request_timeout_s, self._timed_out)
        if self.method == b"CONNECT":
            self.pending = []
            self.sent = None
            self._connect()
            return
        head = self._forward_head(target, fields.get("connection"), extra_host)
        assert self.pending is not None
        self.pending.insert(0, head)
        self.pending_size += len(head)
        if self.sent is not None:
            self.sent.insert(0, head)
            self.sent_size += len(head)
        upstream = ctx.pool.take((destination.host, destination.port))
        if upstream is not None:
            self._attach(upstream, reused=True)
        else:
            self._connect()

    def _forward_head(self, target: bytes, connection: str | None, host: str | None) -> bytes:
        drop = h.hop_by_hop_names(connection)
        extra: list[tuple[str, str]] = []
        hop = self.hop
        if hop is not None and (hop.headers_to_set or hop.headers_to_remove):
            extra = hop.headers_to_set
            drop = h.forward_drop(drop, hop.headers_to_remove, tuple(name for name, _ in extra))
        if host is not None:  # absolute-form: its authority replaces any Host header
            drop = drop.union(("host",))
            extra = [("host", host), *extra]
        if self.declined_upgrade:
            drop = drop.union(("http2-settings",))
        tail = b"\r\n"
        if self.request_chunked:
            drop = drop.union(("content-length",))
            tail = b"transfer-encoding: chunked\r\n\r\n"
        elif self.upgrade:
            drop = drop.difference(("upgrade",))
            tail = _UPGRADE_TAIL + b"\r\n"
        return h.build_head(b"%s %s HTTP/1.1\r\n" % (self.method, target), self.headers, drop, extra, tail)

    # ------------------------------------------------------------------ upstream connection
    def _connect(self) -> None:
        self.connect_task = asyncio.get_running_loop().create_task(self._open_connection())

    async def _open_connection(self) -> None:
        ctx = self.ctx
        destination = self.destination
        assert ctx is not None and destination is not None
        try:
            upstream = await ctx.pool.connect((destination.host, destination.port), ctx.connect_timeout_s)
        except (OSError, TimeoutError) as error:
            self.connect_task = None  # done: fail() must not cancel the task it runs in
            log.debug("connect %s:%d failed: %r", destination.host, destination.port, error)
            if isinstance(error, socket.gaierror):
                self.fail(503, "UH", UH_BODY)
            else:
                self.fail(503, "UF", UF_BODY)
            return
        self.connect_task = None
        if self.finished:
            ctx.pool.give(upstream)
            return
        self._attach(upstream, reused=False)

    def _attach(self, upstream: UpstreamConnection, reused: bool) -> None:
        self.upstream = upstream
        self.reused = reused
        upstream.exchange = self
        upstream.owner = self.conn
        conn = self.conn
        if self.method == b"CONNECT":
            self.pending = None
            assert conn.transport is not None
            conn.transport.write(CONNECT_ESTABLISHED)
            self.status = 200
            self.response_started = True
            conn.start_tunnel(Tunnel(conn, upstream, self._tunnel_closed))
            return
        upstream.parser = httptools.HttpResponseParser(self)
        early = upstream.take_early()  # before the pause below, which taking them must not undo
        if conn.write_paused:
            upstream.pause_reading()
        pending = self.pending
        self.pending = None
        assert upstream.transport is not None and pending is not None
        upstream.transport.writelines(pending)
        if self.pending_size > CONNECT_BUFFER_LIMIT:
            conn.resume_reading_for_buffer()
        self.pending_size = 0
        # Bytes sent before the request (an upstream that is not the HTTP server expected) are read as
        # the response, which the parser then judges; usually there are none.
        for data in early:
            upstream.data_received(data)

    # ------------------------------------------------------------------ response parser callbacks
    # No on_status: the standard reason phrase is sent, as Envoy does (one Python call less per response).
    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.resp_headers
        headers.append((name, value))
        if len(headers) > h.MAX_HEADERS:
            self.upstream_malformed(httptools.HttpParserError("a response head of over 100 headers"))

    def on_headers_complete(self) -> None:
        upstream = self.upstream
        if self.finished or upstream is None:
            return
        status: int = upstream.parser.get_status_code()
        headers, self.resp_headers = self.resp_headers, []
        if status < 200 and status != 101:  # interim (100 Continue, 103 Early Hints): relay, keep waiting
            self.interim = True
            if self.version == "1.1":
                self.out += (h.status_line(status), h.response_headers(headers).lines, h.CRLF)
            return
        self.status = status
        if status == 101:
            if not self.upgrade:
                self.upstream_malformed(httptools.HttpParserError("101 Switching Protocols without an Upgrade request"))
                return
            self.upgrading = True
            self.response_started = True
            self.out += (h.status_line(status), h.response_headers(headers, keep_upgrade=True).lines,
                         _UPGRADE_TAIL, h.CRLF)
            return
        if self.upgrade:  # declined: the bytes held for a tunnel are this request's body and more requests
            self.conn.upgrade_declined(self)
        scanned = h.response_headers(headers)
        # Envoy's limit on names and values, measured on the lines built anyway (each adds ": " and CRLF).
        if len(scanned.lines) - 4 * len(headers) > h.MAX_HEAD_BYTES:
            self.upstream_malformed(httptools.HttpParserError("a response head of over 60 KiB"))
            return
        tail = b""
        if self.method != b"HEAD" and status not in (204, 304) and (scanned.chunked or not scanned.has_length):
            self.until_eof = not scanned.chunked
            if self.version == "1.1":
                self.chunk_out = True  # re-chunk what the parser de-chunked (or what runs to EOF)
                tail = b"transfer-encoding: chunked\r\n"
            else:
                self.keep_alive = False  # HTTP/1.0 client: the body ends when we close
        if not self.keep_alive:
            tail += b"connection: close\r\n"
        elif self.version == "1.0":
            tail += b"connection: keep-alive\r\n"
        self.out += (h.status_line(status), scanned.lines, tail, h.CRLF)
        self.response_started = True
        if self.method == b"HEAD":  # the parser cannot know a HEAD response has no body
            self._response_complete(reuse=False)

    def on_body(self, data: bytes) -> None:
        if self.finished:
            return
        self.response_size += len(data)
        if self.chunk_out:
            self.out.extend(h.chunked(data))
        else:
            self.out.append(data)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.finished or self.upgrading:
            return
        if self.chunk_out:
            self.out.append(h.LAST_CHUNK)
        upstream = self.upstream
        self._response_complete(reuse=upstream is not None and upstream.parser.should_keep_alive())

    # ------------------------------------------------------------------ upstream events
    def upstream_upgraded(self, rest: bytes) -> None:
        upstream = self.upstream
        if self.finished or upstream is None:
            return
        if not self.upgrading:
            self.upstream_malformed(httptools.HttpParserError("unexpected upgrade"))
            return
        self.pending = None
        if rest:
            self.out.append(rest)
        self.flush()
        self.conn.start_tunnel(Tunnel(self.conn, upstream, self._tunnel_closed))

    def upstream_malformed(self, error: Exception) -> None:
        if self.finished:
            return
        log.info("upstream %s sent a malformed response: %s", self._upstream_name(), error)
        # Envoy >= 1.18 answers an upstream protocol error 502 (Router::onUpstreamReset: ProtocolError -> BadGateway).
        self.fail(502, "UPE", UPE_BODY)

    def upstream_lost(self, upstream: UpstreamConnection) -> None:
        if self.finished or upstream is not self.upstream:
            return
        ctx = self.ctx
        assert ctx is not None
        if self.until_eof and self.response_started:  # the body of this response ended with the connection
            if self.chunk_out:
                self.out.append(h.LAST_CHUNK)
            self._response_complete(reuse=False)
            return
        if not self.response_begun and self.reused and not self.retried and self.sent is not None:
            # The pooled connection was closed by its peer (keep-alive race): once more, on a fresh one.
            ctx.stats.inc("upstream.rq_retry")
            self.retried = True
            self.upstream = None
            self.conn.resume_reading_for_upstream()  # the dead connection will never resume it
            self.pending = list(self.sent)
            self.pending_size = self.sent_size
            self._connect()
            return
        self.fail(503, "UC", UC_BODY)

    def _timed_out(self) -> None:
        self.timer = None
        self.fail(504, "UT", UT_BODY)

    # ------------------------------------------------------------------ ending
    def flush(self) -> None:
        """Write what the response parser produced (called when feed_data returns, and before ending)."""
        out = self.out
        if out:
            self.out = []
            transport = self.conn.transport
            if transport is not None and not transport.is_closing():
                transport.writelines(out)

    def _response_complete(self, reuse: bool) -> None:
        ctx = self.ctx
        assert ctx is not None
        # The span ends before the last bytes leave: once they are written, the caller's proxy
        # may close its CLIENT span, and a SERVER span must lie within its CLIENT span.
        end_us = _now_us()
        self.flush()
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            if reuse and self.request_done and not upstream.closed:
                ctx.pool.give(upstream)
            else:
                _drop_upstream(upstream)
        self._finish("-", end_us)
        self.conn.exchange_done(self, close=not (self.keep_alive and self.request_done))

    def fail(self, status: int, flag: str, body: str) -> None:
        """The upstream leg failed: a local reply if nothing was answered yet, else cut the downstream."""
        if self.finished:
            return
        self.flush()
        upstream = self.upstream
        self.upstream = None
        self.pending = self.sent = None
        if upstream is not None:
            _drop_upstream(upstream)
        if self.connect_task is not None:
            self.connect_task.cancel()
            self.connect_task = None
        if self.response_started:
            self._finish(flag)
            self.conn.exchange_done(self, close=True)
            return
        close = not (self.keep_alive and self.request_done)
        end_us = _now_us()
        transport = self.conn.transport
        if transport is not None and not transport.is_closing():
            transport.write(h.local_reply(status, body, close))
        self.status = status
        self.response_size = len(body)
        self._finish(flag, end_us)
        self.conn.exchange_done(self, close=close)

    def downstream_lost(self) -> None:
        """The client went away before the response completed."""
        if self.finished:
            return
        self.out = []
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            _drop_upstream(upstream)
        if self.connect_task is not None:
            self.connect_task.cancel()
            self.connect_task = None
        if not self.response_started:
            self.status = 0
        self._finish("DC")

    def _tunnel_closed(self) -> None:
        self.request_done = True
        self._finish("-")
        self.conn.exchange_done(self, close=True)

    def _finish(self, flag: str, end_us: int | None = None) -> None:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        ctx = self.ctx
        if ctx is None:
            return
        if flag != "-":
            ctx.stats.inc(ctx.flag_stat(flag))
        hop = self.hop
        if hop is not None:
            destination = self.destination
            ctx.finish_hop(hop, ResponseFacts(
                status=self.status, request_size=self.request_size, response_size=self.response_size,
                response_flags=flag, upstream=(destination.host, destination.port) if destination else None,
            ), _now_us() if end_us is None else end_us)

    def _upstream_name(self) -> str:
        destination = self.destination
        return f"{destination.host}:{destination.port}" if destination else "?"


def _drop_upstream(upstream: UpstreamConnection) -> None:
    upstream.exchange = None
    upstream.owner = None
    upstream.close()
