"""One accepted client connection: sniff the protocol, parse HTTP/1.x requests, hand each to an Exchange.

Hot path. httptools' C parser calls the `on_*` methods here; requests are answered in order
(pipelined ones wait in `_queue`, at most about _PIPELINE_DEPTH of them: the rest of a read
waits unparsed, and reading pauses). Reading is paused for any of several reasons at once (a
bitmask), so that flow control for the upstream, the connect buffer and pipelining never undo
each other. A request head is bounded as Envoy bounds it (431 past 60 KiB or 100 headers); a
request that cannot be taken is answered after those read before it, and the connection then
closes the way nginx's lingering close does, so that the client reads the answer.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast

import httptools

from tracemesh_sidecar.proxy.connection_state import ConnectionState, transition
from tracemesh_sidecar.proxy.exchange import Exchange
from tracemesh_sidecar.proxy.headers import (
    CONNECTION,
    HTTP_11,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    Header,
    h2c_upgrade_headers,
    local_reply,
    lowered_name,
    offers_only_h2c,
    stand_in_head,
)
from tracemesh_sidecar.proxy.http2.downstream import H2cUpgrade, Http2DownstreamConnection
from tracemesh_sidecar.proxy.origdst import original_destination
from tracemesh_sidecar.proxy.sniff import classify
from tracemesh_sidecar.proxy.state import DownstreamInfo
from tracemesh_sidecar.proxy.stream import HEADERS_TOO_LARGE_BODY, now_us
from tracemesh_sidecar.proxy.tcp import set_nodelay
from tracemesh_sidecar.proxy.tunnel import Tunnel
from tracemesh_sidecar.telemetry.peer import UNKNOWN_PEER
from tracemesh_sidecar.telemetry.record import Record

if TYPE_CHECKING:
    from tracemesh_sidecar.proxy.listeners import Listener
    from tracemesh_sidecar.proxy.state import DirectionContext
    from tracemesh_sidecar.proxy.upstream import UpstreamConnection

log = logging.getLogger("tracemesh.proxy")

# Module names for the states (proxy/connection_state.py): the hot path compares them per read. Final, as every
# constant of a compiled module: compiled, a Final name is a static read, not a lookup in the module's dict.
_SNIFF: Final = ConnectionState.SNIFF
_HTTP: Final = ConnectionState.HTTP
_WAIT: Final = ConnectionState.WAIT
_REFUSED: Final = ConnectionState.REFUSED
_LINGER: Final = ConnectionState.LINGER
_HANDED_OVER: Final = ConnectionState.HANDED_OVER
_CLOSED: Final = ConnectionState.CLOSED
_PAUSE_PIPELINE: Final = 1
_PAUSE_UPSTREAM: Final = 2
_PAUSE_BUFFER: Final = 4
_PAUSE_REFUSED: Final = 8
# Lingering close as nginx does it: wait while the client keeps sending, 1 s idle, 5 s at most.
_LINGER_IDLE_S: Final = 1.0
_LINGER_MAX_S: Final = 5.0
_HELD_LIMIT: Final = 256 * 1024
# Pipelined requests parsed ahead of the one being answered, at most (give or take one parse step).
_PIPELINE_DEPTH: Final = 16
_PARSE_STEP: Final = 8192
# A head's wire size may exceed MAX_HEAD_BYTES (names and values) by its request line and each
# header's ": " and CRLF; past this, it is over the limit however it is counted.
_MAX_RAW_HEAD: Final = MAX_HEAD_BYTES + 4 * MAX_HEADERS + 1024
_SWITCHING_TO_H2C: Final = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"


class _HeadTooLarge(Exception):
    """Raised by a parser callback to stop parsing a request head past MAX_HEAD_BYTES or MAX_HEADERS."""


class DownstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_connection_named",
        "_eof",
        "_head_fed",
        "_head_split",
        "_headers",
        "_held",
        "_linger_busy",
        "_linger_end",
        "_linger_timer",
        "_open_task",
        "_parsing",
        "_paused",
        "_queue",
        "_receiving",
        "_refusal",
        "_skipped",
        "_sniff_timer",
        "_unparsed",
        "_upgrade_h2c",
        "_url",
        "_write_after",
        "current",
        "draining",
        "info",
        "listener",
        "mode",
        "parser",
        "transport",
        "write_paused",
    )

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        # Where it came from and was aimed (state.DownstreamInfo), known once the connection is made.
        self.info = DownstreamInfo(listener, ("", 0), ("", 0), None, listener.service_port)
        self.mode: ConnectionState = _SNIFF
        self.parser: Any = None
        self.current: Exchange | None = None  # the exchange whose response is being sent
        self._receiving: Exchange | None = None  # the exchange whose request is being read
        self._queue: collections.deque[Exchange] = collections.deque()
        self._url: list[bytes] = []  # the request target's pieces, joined once the head is complete
        self._headers: list[Header] = []
        self._connection_named = False  # the head being read has a Connection header (see on_headers_complete)
        # The head being read: the bytes of the reads that ended inside it (the parser buffers a header it
        # has not finished), and whether it may be over the limit (it began in an earlier read): only then
        # is it measured, once complete (a head read whole is no larger than the read).
        self._head_fed = 0
        self._head_split = False
        self._refusal: bytes | None = None  # the local reply owed after the requests before a bad one
        self._linger_timer: asyncio.TimerHandle | None = None
        self._linger_end = 0.0
        self._linger_busy = False
        self._unparsed = b""  # read but not parsed yet: pipelined requests past _PIPELINE_DEPTH
        self._write_after: Exchange | None = None  # its first upstream write waits for the end of this parse
        self._parsing = False
        self._held: list[bytes] = []
        self._paused = 0
        self._eof = False
        # An Upgrade request that the parser ended at its head (llhttp does): an h2c offer we decline, or
        # one with a body. If it stays HTTP, its body and what follows are parsed on (see _read_on).
        self._skipped: Exchange | None = None
        self._upgrade_h2c: H2cUpgrade | None = None  # an `Upgrade: h2c` request we accept (see on_headers_complete)
        self._open_task: asyncio.Task[None] | None = None
        self._sniff_timer: asyncio.TimerHandle | None = None
        self.write_paused = False
        self.draining = False

    def _to(self, state: ConnectionState) -> None:
        self.mode = transition(self.mode, state)

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        listener = self.listener
        peer_name = transport.get_extra_info("peername")
        sock_name = transport.get_extra_info("sockname")
        peer = (peer_name[0], peer_name[1]) if isinstance(peer_name, tuple) else ("", 0)
        local = (sock_name[0], sock_name[1]) if isinstance(sock_name, tuple) else ("", 0)
        set_nodelay(transport)
        sock = transport.get_extra_info("socket")
        aimed: tuple[str, int] | None = None
        service_port = listener.service_port
        if sock is not None and listener.kind in ("outbound", "inbound-capture"):
            original = original_destination(sock)
            if original is not None and original != local:
                if listener.kind == "outbound":
                    aimed = original
                else:
                    service_port = original[1]
        info = self.info = DownstreamInfo(listener, peer, local, aimed, service_port)
        listener.connection_opened(self)
        if (info.original if listener.kind == "outbound" else info.service_port) is not None:
            # Where a silent client's bytes could go: give up sniffing after Envoy's listener filter
            # timeout, so that a server that speaks first (MySQL, SMTP, SSH) gets to.
            timeout = listener.context().protocol_detection_timeout_s
            if timeout > 0:
                self._sniff_timer = asyncio.get_running_loop().call_later(timeout, self._sniff_timed_out)

    def data_received(self, data: bytes) -> None:
        mode = self.mode
        if mode == _HTTP:
            if len(data) > _PARSE_STEP or self._unparsed:
                self._feed_in_steps(data)
            else:  # the usual read: one small request, parsed at once
                self._parse(data)
        elif mode == _SNIFF:
            self._sniff(data)
        elif mode == _WAIT:
            self._hold(data)
        elif mode == _LINGER:  # discarded
            self._linger_busy = True

    def eof_received(self) -> bool | None:
        if self.mode == _WAIT:  # a tunnel being opened: pass the half-close on once it is up
            self._eof = True
            return True
        # HTTP: a client that ends its side has given up on what it asked (Envoy and nginx agree):
        # close, and a request in progress is reported with DC.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._to(_CLOSED)
        self._stop_sniff_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        self.listener.connection_closed(self)
        if self._open_task is not None:
            self._open_task.cancel()
            self._open_task = None
        current = self.current
        self.current = None
        self._queue.clear()
        if current is not None:
            current.downstream_lost()

    def pause_writing(self) -> None:
        self.write_paused = True
        upstream = self._linked_upstream()
        if upstream is not None:
            upstream.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        upstream = self._linked_upstream()
        if upstream is not None:
            upstream.resume_reading()

    # ------------------------------------------------------------------ flow control
    def _linked_upstream(self) -> UpstreamConnection | None:
        current = self.current
        return current.upstream if current is not None else None

    def _pause(self, reason: int) -> None:
        transport = self.transport
        if not self._paused and transport is not None and not transport.is_closing():
            transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            transport = self.transport
            if not self._paused and transport is not None and not transport.is_closing():
                transport.resume_reading()

    def pause_reading_for_upstream(self) -> None:
        self._pause(_PAUSE_UPSTREAM)

    def resume_reading_for_upstream(self) -> None:
        self._resume(_PAUSE_UPSTREAM)

    def pause_reading_for_buffer(self) -> None:
        self._pause(_PAUSE_BUFFER)

    def resume_reading_for_buffer(self) -> None:
        self._resume(_PAUSE_BUFFER)

    # ------------------------------------------------------------------ protocol detection
    def _sniff(self, data: bytes) -> None:
        self._held.append(data)
        buffered = b"".join(self._held) if len(self._held) > 1 else data
        verdict = classify(buffered)
        if verdict == "undecided":
            return
        self._stop_sniff_timer()
        self._held = []
        if verdict == "http1":
            self._to(_HTTP)
            self.parser = httptools.HttpRequestParser(self)
            self._feed(buffered)
        elif verdict == "http2":
            self._hand_over_to_http2(buffered, None)
        else:
            self._pass_through(buffered)

    def _hand_over_to_http2(self, received: bytes, upgrade: H2cUpgrade | None) -> None:
        """From now on the connection speaks HTTP/2: its transport goes to an HTTP/2 protocol, with what was read."""
        transport = self.transport
        assert transport is not None
        self._to(_HANDED_OVER)
        http2 = Http2DownstreamConnection(self.listener, self.info)
        transport.set_protocol(http2)
        self.listener.connection_replaced(self, http2)
        if self._paused:
            self._paused = 0
            transport.resume_reading()
        self.transport = None
        http2.take_over(transport, received, upgrade)

    def _sniff_timed_out(self) -> None:
        """The client said too little to tell its protocol in time: relay it, opaque, to where it aimed."""
        self._sniff_timer = None
        if self.mode == _SNIFF:
            held, self._held = self._held, []
            self.listener.count("downstream_cx_protocol_detection_timeout")
            self._pass_through(b"".join(held))

    def _stop_sniff_timer(self) -> None:
        if self._sniff_timer is not None:
            self._sniff_timer.cancel()
            self._sniff_timer = None

    def _pass_through(self, first: bytes) -> None:
        """Not HTTP/1.x: an opaque byte pipe to where the client aimed, or a 400 when we cannot know."""
        listener = self.listener
        if listener.kind == "outbound":
            destination = self.info.original
        else:
            port = self.info.service_port
            app = None if port is None else listener.context().inbound.to_app(port)
            destination = None if app is None else (app.host, app.port)
        if destination is None:
            listener.count("downstream_rq_malformed")
            self._reply_and_close(400, "not an HTTP/1.x request, and no original destination to pass it to")
            return
        listener.count("downstream_cx_opaque")
        self._to(_WAIT)
        self._hold(first)
        self._open_task = asyncio.get_running_loop().create_task(self._open_tunnel(destination))

    async def _open_tunnel(self, destination: tuple[str, int]) -> None:
        context = self.listener.context()
        try:
            upstream = await self.listener.pool.connect(destination, context.connect_timeout_s)
        except (OSError, TimeoutError) as error:
            self._open_task = None
            log.debug("opaque connection to %s:%d failed: %r", destination[0], destination[1], error)
            self.close()
            return
        self._open_task = None
        if self.mode == _CLOSED:
            upstream.close()
            return
        telemetry = context.telemetry
        if telemetry is None:
            self.hand_over_to_tunnel(upstream)
            return
        # Istio's TCP metrics: the opened count now, the byte counts and the closed count (and the access log
        # line) when the connection ends.
        start_us = now_us()
        record = self._tcp_record(context, destination, upstream, start_us)
        context.record_safely(telemetry.tcp_opened, record)

        def closed(tunnel: Tunnel) -> None:
            record.end_us = now_us()
            record.bytes_received, record.bytes_sent = tunnel.received, tunnel.sent
            context.record_safely(telemetry.tcp_closed, record)

        self.hand_over_to_tunnel(upstream, closed)

    def _tcp_record(self, context: DirectionContext, destination: tuple[str, int], upstream: UpstreamConnection,
                    start_us: int) -> Record:
        service: str | None
        info = self.info
        if self.listener.direction == "inbound":
            app = context.inbound.to_app(destination[1] if info.service_port is None else info.service_port)
            cluster, service = app.cluster, app.operation.rpartition(":")[0]
            local = info.inbound_local
        else:
            route = context.outbound.virtual.get(destination)
            cluster, service = (route.cluster, route.operation.rpartition(":")[0]) if route is not None else \
                ("PassthroughCluster", None)
            local = destination
        return Record(tcp=True, method="", path="", authority="", protocol="", request_headers={},
                      response_headers={}, status=0, flags="-", bytes_received=0, bytes_sent=0, start_us=start_us,
                      end_us=start_us, upstream_host=destination, upstream_local=upstream.local, cluster=cluster,
                      service_host=service, downstream_local=local, downstream_remote=info.peer, route_name=None,
                      peer=UNKNOWN_PEER)  # Istio exchanges TCP peer metadata only under mTLS

    def hand_over_to_tunnel(self, upstream: UpstreamConnection,
                            on_closed: Callable[[Tunnel], None] | None = None) -> None:
        """From now on bytes flow unparsed between this connection and `upstream`, both transports handed over to
        a tunnel; what arrived after the request head, and what the upstream said first, go first."""
        transport = self.transport
        assert transport is not None
        listener = self.listener
        upstream_transport, early = upstream.hand_over()

        def closed(tunnel: Tunnel) -> None:
            listener.connection_closed(tunnel.downstream)
            upstream.released()
            if on_closed is not None:
                on_closed(tunnel)

        tunnel = Tunnel(transport, upstream_transport, listener, closed)
        self._to(_HANDED_OVER)
        self.transport = None
        self._paused = 0
        listener.connection_replaced(self, tunnel.downstream)
        held, self._held = self._held, []
        tunnel.start(held, early, self._eof)

    def _hold(self, data: bytes) -> None:
        if data:
            self._held.append(data)
            if sum(map(len, self._held)) > _HELD_LIMIT:
                self._pause(_PAUSE_BUFFER)

    # ------------------------------------------------------------------ HTTP/1.x
    def _feed(self, data: bytes) -> None:
        if len(data) > _PARSE_STEP or self._unparsed:
            self._feed_in_steps(data)
        else:  # the usual read: one small request, parsed at once
            self._parse(data)

    def _feed_in_steps(self, data: bytes) -> None:
        """Parse a large read a step at a time, so that a client pipelining faster than it is answered
        gets at most about _PIPELINE_DEPTH requests parsed: the rest waits unparsed, reading paused,
        until the queue drains. A body is parsed in one step as far as its Content-Length reaches."""
        pending = self._unparsed + data if self._unparsed else data
        self._unparsed = b""
        offset, end = 0, len(pending)
        while offset < end:
            if len(self._queue) >= _PIPELINE_DEPTH:
                self._unparsed = pending[offset:]
                self._pause(_PAUSE_PIPELINE)
                return
            step = max(_PARSE_STEP, self._body_left())
            self._parse(pending[offset:offset + step])
            offset += step
            if self.mode != _HTTP:  # upgraded (the rest is held for the tunnel), refused or closed
                if self.mode == _WAIT:
                    self._hold(pending[offset:])
                return

    def _parse_unparsed(self) -> None:
        """The pipelined requests parsed so far are answered: parse what waited, then read again."""
        if self.mode == _HTTP and self._unparsed:
            self._feed_in_steps(b"")
        if not self._unparsed and not self._queue:
            self._resume(_PAUSE_PIPELINE)

    def _body_left(self) -> int:
        """Bytes of body still to come for the request being read, as far as its Content-Length says."""
        receiving = self._receiving
        if receiving is None or receiving.request_chunked:
            return 0
        for lname, _, value in receiving.headers:
            if lname == "content-length" and value.strip().isdigit():
                return int(value) - receiving.request_size
        return 0

    def _parse(self, data: bytes) -> None:
        in_head = bool(self._url or self._headers)  # a head (or trailers) begun by an earlier read
        self._head_split = in_head or len(data) > MAX_HEAD_BYTES
        headers = self._headers  # replaced when that head completes
        try:
            self._feed_parser(data)
        except httptools.HttpParserUpgrade as upgrade:  # CONNECT or Upgrade: the rest is not HTTP
            h2c, self._upgrade_h2c = self._upgrade_h2c, None
            if h2c is not None and self.mode == _HTTP:
                assert self.transport is not None
                self.transport.write(_SWITCHING_TO_H2C)
                self._hand_over_to_http2(data[upgrade.args[0]:], h2c)
                return
            skipped, self._skipped = self._skipped, None
            if skipped is not None and skipped.declined_upgrade:  # ... unless we declined it: HTTP goes on
                if self.mode == _HTTP:
                    self._parse(self._read_on(skipped, data[upgrade.args[0]:]))
            elif self.mode == _HTTP:
                self._to(_WAIT)
                self._hold(data[upgrade.args[0]:])
        except httptools.HttpParserCallbackError as error:
            if isinstance(error.__context__, _HeadTooLarge):
                self._refuse(431, HEADERS_TOO_LARGE_BODY, "downstream_rq_headers_too_large")
                return
            self.listener.count("downstream_cx_internal_error")
            log.exception("internal error on a connection from %s:%d; closing it", *self.info.peer)
            self.abort()
        except httptools.HttpParserError as error:
            log.debug("malformed request from %s:%d: %s", *self.info.peer, error)
            self._refuse(400, "bad request", "downstream_rq_malformed")
        else:
            if in_head and self._headers is headers:  # all of this read belongs to one unfinished head
                # (or to trailers: a header list is replaced only once complete)
                self._head_fed += len(data)
                if self._head_fed > _MAX_RAW_HEAD:
                    self._refuse(431, HEADERS_TOO_LARGE_BODY, "downstream_rq_headers_too_large")

    def _feed_parser(self, data: bytes) -> None:
        self._parsing = True
        try:
            self.parser.feed_data(data)
        finally:
            self._parsing = False
            waiting = self._write_after
            if waiting is not None:
                self._write_after = None
                waiting.send_deferred()

    def write_after_parse(self, exchange: Exchange) -> bool:
        """Whether `exchange` may write upstream once the read being parsed is (its head and the body in that read
        at once): False when no read is being parsed (a pipelined request started as the one before it ended)."""
        if not self._parsing:
            return False
        waiting = self._write_after
        if waiting is not None and waiting is not exchange:
            waiting.send_deferred()
        self._write_after = exchange
        return True

    def _read_on(self, exchange: Exchange, rest: bytes) -> bytes:
        """What to parse after an Upgrade request that stays HTTP: its body, behind a stand-in head that
        frames it as the request did (llhttp ended the request at its head), then the next requests."""
        if exchange.request_done:
            self._receiving = None
            return rest
        self._receiving = exchange
        return stand_in_head(exchange.headers) + rest

    def upgrade_declined(self, exchange: Exchange) -> None:
        """The app answered an Upgrade request with a plain response: what was held for a tunnel is HTTP."""
        if self.mode != _WAIT or exchange is not self.current:
            return
        self._to(_HTTP)
        held, self._held = self._held, []
        self._resume(_PAUSE_BUFFER)
        self._feed(self._read_on(exchange, b"".join(held)))

    def _refuse(self, status: int, body: str, stat: str) -> None:
        """A request this connection cannot take: parse no more, answer the ones read before it, then
        `status`, then close."""
        self.listener.count(stat)
        receiving, self._receiving = self._receiving, None
        self._to(_REFUSED)
        self._unparsed = b""
        self._pause(_PAUSE_REFUSED)
        if receiving is not None:  # its body is what is wrong
            if receiving is self.current:
                receiving.fail(status, "DPE", body)
                return
            if receiving in self._queue:  # not started: nothing of it went upstream yet
                self._queue.remove(receiving)
        self._refusal = local_reply(status, body, close=True)
        if self.current is None:
            self._send_refusal()

    def _send_refusal(self) -> None:
        reply, self._refusal = self._refusal, None
        transport = self.transport
        if reply is not None and transport is not None and not transport.is_closing():
            transport.write(reply)
        self._linger()

    def on_url(self, url: bytes) -> None:
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = lowered_name(name)
        if lname == CONNECTION:
            self._connection_named = True
        self._headers.append((lname, name, value))

    def on_headers_complete(self) -> None:
        connection_named = self._connection_named
        self._connection_named = False
        if self._receiving is not None:  # the stand-in head for the body of an Upgrade request (see _read_on)
            self._url = []
            self._headers = []
            return
        if self._head_split or len(self._headers) > MAX_HEADERS:
            self._check_head()
        parser = self.parser
        upgrade: bool = parser.should_upgrade()
        if upgrade and self._accepts_h2c(parser):
            return
        keep_alive: bool = parser.should_keep_alive()
        # llhttp takes HTTP/0.9, 1.0, 1.1 and 2.0, and keeps a request without a Connection header alive only on
        # HTTP/1.1: then the version is known without get_http_version, which formats it anew (~2k instructions).
        version = HTTP_11 if keep_alive and not connection_named else parser.get_http_version()
        exchange = Exchange(self, parser.get_method(), b"".join(self._url), version, self._headers,
                            keep_alive and not self.draining, upgrade)
        self._url = []  # ready for the next request (instead of an on_message_begin callback)
        self._headers = []
        self._head_fed = 0
        self._receiving = exchange
        if exchange.declined_upgrade or (exchange.upgrade and not exchange.request_done):
            self._skipped = exchange
        if self.current is None:
            self.current = exchange
            exchange.start(self.listener.context())
        else:
            self._queue.append(exchange)
            self._pause(_PAUSE_PIPELINE)

    def _accepts_h2c(self, parser: Any) -> bool:
        """An `Upgrade: h2c` request (RFC 7540 section 3.2; curl --http2 on an http:// URL) with no body and nothing
        before it on the connection becomes stream 1 of an HTTP/2 connection: the parser's HttpParserUpgrade
        then hands the connection over (see _parse). Any other h2c offer is declined, as before (the Exchange)."""
        headers = self._headers
        if self.current is not None or self._queue or not offers_only_h2c(headers):
            return False
        upgrade = h2c_upgrade_headers(parser.get_method(), b"".join(self._url), headers)
        if upgrade is None:
            return False
        self._upgrade_h2c = H2cUpgrade(*upgrade)
        self._url = []
        self._headers = []
        return True

    def _check_head(self) -> None:
        """Envoy's limits, counted as Envoy counts them: the URL, the names and values, their number."""
        headers = self._headers
        size = sum(map(len, self._url)) + sum(len(name) + len(value) for _, name, value in headers)
        if size > MAX_HEAD_BYTES or len(headers) > MAX_HEADERS:
            raise _HeadTooLarge

    def on_body(self, body: bytes) -> None:
        receiving = self._receiving
        if receiving is not None:
            receiving.request_body(body)

    def on_message_complete(self) -> None:
        receiving = self._receiving
        if receiving is not None and receiving is self._skipped:  # llhttp ends it at its head: see _read_on
            return
        self._receiving = None
        if self._headers:  # trailers: dropped (a body is re-chunked without them), never the next request's
            self._headers = []
            self._connection_named = False
        if receiving is not None:
            receiving.request_complete()

    def exchange_done(self, exchange: Exchange, close: bool) -> None:
        """`exchange` has answered: start the next pipelined one, or close."""
        if exchange is not self.current:
            return
        self.current = None
        mode = self.mode
        if close or self.draining or (mode != _HTTP and mode != _REFUSED):
            if exchange.request_done and not (self._queue or self._unparsed or self._paused):
                self.close()
            else:  # the client may still be sending: its unread bytes would turn our FIN into a reset
                self._linger()
            return
        # Whatever the finished exchange's upstream or buffer had paused no longer applies.
        self._resume(_PAUSE_UPSTREAM | _PAUSE_BUFFER)
        queue = self._queue
        while queue and self.current is None and (self.mode == _HTTP or self.mode == _REFUSED):
            following = queue.popleft()
            self.current = following
            following.start(self.listener.context())
        if self.current is None and self._refusal is not None:
            self._send_refusal()
        elif not queue:
            if self._unparsed:  # not from here: this may run inside the parser's callbacks
                asyncio.get_running_loop().call_soon(self._parse_unparsed)
            else:
                self._resume(_PAUSE_PIPELINE)

    # ------------------------------------------------------------------ ending
    def _reply_and_close(self, status: int, body: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(local_reply(status, body, close=True))
        self._linger()

    def _linger(self) -> None:
        """Close once the client has stopped sending (nginx's lingering close, Envoy's delayed close):
        closing with its bytes unread makes the kernel reset the connection, and the client may lose
        the answer written just before."""
        transport = self.transport
        if self.mode == _LINGER:
            return
        if transport is None or transport.is_closing() or not transport.can_write_eof():
            self.close()
            return
        self._to(_LINGER)
        self._queue.clear()
        self._unparsed = b""
        transport.write_eof()  # the answer ends here; what still comes in is read and dropped
        self._paused = 0
        transport.resume_reading()
        loop = asyncio.get_running_loop()
        self._linger_end = loop.time() + _LINGER_MAX_S
        self._linger_timer = loop.call_later(_LINGER_IDLE_S, self._linger_check)

    def _linger_check(self) -> None:
        self._linger_timer = None
        loop = asyncio.get_running_loop()
        if self.mode == _LINGER and self._linger_busy and loop.time() < self._linger_end:
            self._linger_busy = False
            self._linger_timer = loop.call_later(_LINGER_IDLE_S, self._linger_check)
        else:
            self.close()

    def discourage(self) -> None:
        """Draining (Envoy's drainClose for HTTP/1.1): the response in progress, or the next request's if
        the connection is idle, says `connection: close`, and the connection closes after it. An idle
        keep-alive connection is left open: closing it could race a request its client is sending."""
        self.draining = True
        current = self.current
        if current is not None and not current.response_started:
            current.close_after()
        for queued in self._queue:
            queued.close_after()

    def drain(self) -> None:
        """Shutdown: close now if idle, else after the response in progress."""
        self.draining = True
        if self.current is None and self.mode != _WAIT:
            self.close()

    def close(self) -> None:
        self._to(_CLOSED)
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._to(_CLOSED)
        if self.transport is not None:
            self.transport.abort()
