"""One HTTP request/response through the proxy: routing, tracing, the upstream leg, failures.

Hot path. Everything here is driven by parser callbacks (httptools' C parser calls `on_*`
on this object, through its connection's ResponseCallbacks, for the upstream response) and by
the downstream connection (request body, request end, loss). No coroutine runs per request
unless a new upstream connection must be opened: a pooled connection is written to
synchronously, and the response is relayed from the parser callbacks to the downstream
transport, one write per upstream read.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, cast

import httptools

from tracemesh_sidecar.proxy import headers as h
from tracemesh_sidecar.proxy.relay import Relay
from tracemesh_sidecar.proxy.retry import Failure, backoff_s, retries_failure, retries_response
from tracemesh_sidecar.proxy.routing import split_absolute_target
from tracemesh_sidecar.proxy.seams import HeaderList
from tracemesh_sidecar.proxy.stream import (
    RETRY_BUFFER_LIMIT,
    UC_BODY,
    UF_BODY,
    UH_BODY,
    UPE_BODY,
    UT_BODY,
    LocalReply,
    RequestHead,
    StreamOutcome,
    StreamPlan,
    finish_stream,
    now_us,
    plan_request,
)
from tracemesh_sidecar.telemetry.peer import (
    PEER_HEADER_BYTES,
    PEER_HEADERS,
    PEER_METADATA_BYTES,
    UNKNOWN_PEER,
    Peer,
    answer_lines,
    carries_peer_headers,
    decode_peer,
)
from tracemesh_sidecar.tracing.grpc import GRPC_STATUS, GRPC_STATUS_BYTES

if TYPE_CHECKING:
    from tracemesh_sidecar.proxy.downstream import DownstreamConnection
    from tracemesh_sidecar.proxy.state import DirectionContext, DownstreamInfo
    from tracemesh_sidecar.proxy.tunnel import Tunnel
    from tracemesh_sidecar.proxy.upstream import UpstreamConnection

log = logging.getLogger("tracemesh.proxy")

# Request body held while the upstream connection is being opened, before reading pauses.
CONNECT_BUFFER_LIMIT: Final = 256 * 1024
# A request's first write waits for the end of the client's read (head and body in one writev, one TCP segment
# for a small request: an upstream that answers after the head alone would find the body late), up to this much.
DEFERRED_WRITE_LIMIT: Final = 64 * 1024

BAD_HOST_BODY: Final = "bad request: an HTTP/1.1 request needs exactly one Host header"
CONNECT_ESTABLISHED: Final = b"HTTP/1.1 200 Connection established\r\n\r\n"
_UPGRADE_TAIL: Final = b"connection: upgrade\r\n"


_PROTOCOLS: Final = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}
# The metadata exchange headers, taken out of an outbound response as its other headers are scanned.
_PEER_TAKEN: Final = h.TakenNames(PEER_HEADER_BYTES)
_GRPC_STATUS_LENGTH: Final = len(GRPC_STATUS_BYTES)
_NO_NAMES: Final[frozenset[str]] = frozenset()
_HOST: Final = frozenset(("host",))
_PEER_HEADERS_AND_HOST: Final = PEER_HEADERS | _HOST
_UNPLANNED: Final = StreamPlan()  # never changed: an exchange's own plan replaces it before anything is routed


class Exchange:
    # Per-request state. The fields every request starts with the same value are class
    # attributes, so __init__ (once per request) sets only what differs; an assignment shadows
    # them per instance.
    ctx: DirectionContext | None = None
    head: RequestHead | None = None
    relay: Relay | None = None  # set for a request relayed to an HTTP/2 upstream (see start)
    deferred = False  # the request's first write waits for the end of the client's read (_attach)
    unacknowledged = 0  # relayed request bytes the upstream has not taken yet
    plan = _UNPLANNED  # replaced by start()'s
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
    response_started = False  # our response head went downstream
    interim = False
    upgrading = False
    chunk_out = False
    until_eof = False
    response_size = 0
    finished = False
    declined_upgrade = False  # an `Upgrade: h2c` offer, forwarded as a plain request
    retries = 0  # the route's retries made
    exhausted = False  # a retriable failure with no retry left: Envoy's URX
    try_timer: asyncio.TimerHandle | None = None
    # For metrics and access logs: the request's header fields, the response's raw headers, the upstream socket's
    # local address, and the workload that answered (from its sidecar's metadata exchange headers).
    fields: dict[str, str] | None = None
    response_head: list[tuple[bytes, bytes]] | None = None
    upstream_local: tuple[str, int] | None = None
    upstream_peer: Peer = UNKNOWN_PEER

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
        relay = self.relay
        if relay is not None:
            self.unacknowledged += len(data)
            if self.unacknowledged > CONNECT_BUFFER_LIMIT:
                self.conn.pause_reading_for_buffer()
            relay.request_data(data, len(data))
            return
        if self.request_chunked:
            self._send(h.chunked(data))
        else:
            self._send((data,))

    def request_complete(self) -> None:
        self.request_done = True
        if self.relay is not None:
            self.relay.request_ended()
            return
        if self.request_chunked:
            self._send((h.LAST_CHUNK,))

    def _send(self, pieces: tuple[bytes, ...]) -> None:
        if self.finished:
            return
        sent = self.sent
        if sent is not None:
            self.sent_size += _length(pieces)
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
        self.pending_size += _length(pieces)
        if self.deferred:
            if self.pending_size > DEFERRED_WRITE_LIMIT:
                self.send_deferred()
        elif self.pending_size > CONNECT_BUFFER_LIMIT:
            self.conn.pause_reading_for_buffer()

    def start(self, ctx: DirectionContext) -> None:
        """Route (the version-free plan: proxy/stream.py), open the hop's span, and send the head upstream (or
        answer locally)."""
        self.ctx = ctx
        self.start_us = now_us()
        ctx.rq_total.inc()
        conn = self.conn
        fields = self.fields = h.header_fields(self.headers)
        target = self.target
        extra_host: str | None = None
        bad_host = False
        if self.method == b"CONNECT":
            self.authority = target.decode("latin-1")
        else:
            absolute = split_absolute_target(target)
            if absolute is not None:
                self.authority, target = absolute
                extra_host = self.authority
            else:
                host = fields.get("host")
                # RFC 9112 section 3.2: none in HTTP/1.1, or more than one (joined with ", "), is a 400: the
                # app could route on another Host than the one traced and routed here.
                bad_host = (host is None and self.version == "1.1") or (host is not None and "," in host)
                self.authority = host or ""
        head = self.head = RequestHead(self.method.decode("latin-1"), self.target.decode("latin-1"),
                                       target.decode("latin-1"), self.authority, _PROTOCOLS[self.version], fields)
        if bad_host:
            self.keep_alive = False
            self.fail(400, "DPE", BAD_HOST_BODY)
            return
        if self.method == b"CONNECT":
            destination = ctx.route_connect(self.authority, conn.info)
            self.plan = StreamPlan(destination=destination)
            if destination is None:
                self.fail(503, "UH", UH_BODY)
                return
            self._arm_timeout(ctx.request_timeout_s)
            self.pending = []
            self.sent = None
            self._connect()
            return
        plan = self.plan = plan_request(ctx, conn.info, head, self.start_us)
        if plan.reply is not None:
            self.fail(*plan.reply)
            return
        if plan.destination is not None and plan.destination.http2:
            # A port declared HTTP/2 or gRPC: the version-free relay speaks HTTP/2 upstream, and this exchange is
            # its downstream stream (the methods under "as the relay's downstream stream").
            relay = self.relay = Relay(self, [(lname.encode("latin-1"), value) for lname, _, value in self.headers],
                                       self.request_done, downstream_http2=False)
            relay.start(ctx, head, plan, self.start_us)
            return
        self._arm_timeout(plan.timeout_s)
        head_bytes = self._forward_head(plan.path.encode("latin-1") if plan.route is not None else target,
                                        fields.get("connection"), extra_host, plan.set_headers, plan.remove_headers)
        assert self.pending is not None
        self.pending.insert(0, head_bytes)
        self.pending_size += len(head_bytes)
        if self.sent is not None:
            self.sent.insert(0, head_bytes)
            self.sent_size += len(head_bytes)
        destination = plan.destination
        assert destination is not None
        upstream = self.conn.listener.pool.take((destination.host, destination.port))
        if upstream is not None:
            self._attach(upstream, reused=True, defer=True)
        else:
            self._connect()

    def _arm_timeout(self, timeout_s: float | None) -> None:
        """The request's timeout (a route's: all tries together), and a route's first try's."""
        if timeout_s is not None:
            self.timer = asyncio.get_running_loop().call_later(timeout_s, self._timed_out)
        if self.plan.route is not None:
            self._arm_try_timeout()

    def _arm_try_timeout(self) -> None:
        route = self.plan.route
        policy = route.retries if route is not None else None
        if policy is not None and policy.per_try_timeout_s:
            self.try_timer = asyncio.get_running_loop().call_later(policy.per_try_timeout_s, self._try_timed_out)

    def _try_timed_out(self) -> None:
        self.try_timer = None
        if not self._retry("per-try-timeout"):
            self.fail(504, "UT", UT_BODY)

    def _retry(self, failure: Failure | None, status: int = 0, grpc_status: str | None = None) -> bool:
        """Envoy's router retry: another try on a fresh pick of the same destination's endpoints, after a
        backoff, while the route's retries last and the request is whole in the retry buffer."""
        route = self.plan.route
        policy = route.retries if route is not None else None
        if policy is None or self.finished:
            return False
        retriable = retries_failure(policy, failure) if failure is not None else \
            retries_response(policy, status, grpc_status)
        if not retriable:
            return False
        if self.retries >= policy.attempts:
            self.exhausted = True
            return False
        if self.sent is None or not self.request_done:
            return False
        ctx = self.ctx
        assert ctx is not None
        self.retries += 1
        ctx.stats.inc("upstream.rq_retry")
        if self.try_timer is not None:
            self.try_timer.cancel()
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            _drop_upstream(upstream)
        if self.connect_task is not None and failure != "connect-failure":
            self.connect_task.cancel()
        self.connect_task = None
        self.conn.resume_reading_for_upstream()
        self.resp_headers = []
        self.response_head = None
        self.out = []
        self.status = 0
        self.interim = self.until_eof = self.chunk_out = False
        self.pending = list(self.sent)
        self.pending_size = self.sent_size
        self.try_timer = asyncio.get_running_loop().call_later(backoff_s(self.retries), self._next_try)
        return True

    def _next_try(self) -> None:
        self.try_timer = None
        ctx = self.ctx
        weighted = self.plan.weighted
        if self.finished or ctx is None or weighted is None:
            return
        destination = ctx.upstream(weighted)
        if destination is None:
            self.fail(503, "UH", UH_BODY)
            return
        self.plan.destination = destination
        self._arm_try_timeout()
        upstream = self.conn.listener.pool.take((destination.host, destination.port))
        if upstream is not None:
            self._attach(upstream, reused=True)
        else:
            self._connect()

    def _forward_head(self, target: bytes, connection: str | None, host: str | None,
                      extra: Sequence[tuple[str, str]], remove: frozenset[str]) -> bytes:
        """`extra`, `remove`: what the plan sets (replacing same-named headers) and drops."""
        ctx = self.ctx
        peer_lines = ctx.peer_lines if ctx is not None else b""
        # Dropped beside the hop-by-hop headers and the plan's: the metadata exchange's, which ours replace
        # (outbound) or the app never sees (inbound), and any Host header an absolute-form target's authority
        # replaces. One memoized union for all (forward_drop), where a frozenset's union is a generic call each.
        also = _NO_NAMES
        if peer_lines or (self.fields is not None and carries_peer_headers(self.fields)):
            also = PEER_HEADERS if host is None else _PEER_HEADERS_AND_HOST
        elif host is not None:
            also = _HOST
        drop = h.hop_by_hop_names(connection)
        if extra or remove or also:
            drop = h.forward_drop(drop, remove, tuple(name for name, _ in extra), also)
        if host is not None:  # absolute-form: its authority replaces any Host header
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
        if peer_lines:  # the metadata exchange: ours
            tail = peer_lines + tail
        return h.build_head(b"%s %s HTTP/1.1\r\n" % (self.method, target), self.headers, drop, extra, tail)

    # ------------------------------------------------------------------ upstream connection
    def _connect(self) -> None:
        self.connect_task = asyncio.get_running_loop().create_task(self._open_connection())

    async def _open_connection(self) -> None:
        ctx = self.ctx
        destination = self.plan.destination
        assert ctx is not None and destination is not None
        pool = self.conn.listener.pool
        try:
            upstream = await pool.connect((destination.host, destination.port), ctx.connect_timeout_s)
        except (OSError, TimeoutError) as error:
            self.connect_task = None  # done: fail() must not cancel the task it runs in
            log.debug("connect %s:%d failed: %r", destination.host, destination.port, error)
            if self._retry("connect-failure"):
                return
            if isinstance(error, socket.gaierror):
                self.fail(503, "UH", UH_BODY)
            else:
                self.fail(503, "UF", UF_BODY)
            return
        self.connect_task = None
        if self.finished:
            self.conn.listener.pool.give(upstream)
            return
        self._attach(upstream, reused=False)

    def _attach(self, upstream: UpstreamConnection, reused: bool, defer: bool = False) -> None:
        """`defer`: attached while the client's read is being parsed; what of the body that read holds is still to
        come, and the head goes with it in one write once the parse returns (send_deferred)."""
        self.upstream = upstream
        self.upstream_local = upstream.local
        self.reused = reused
        conn = self.conn
        if self.method == b"CONNECT":
            self.pending = None
            assert conn.transport is not None
            conn.transport.write(CONNECT_ESTABLISHED)
            self.status = 200
            self.response_started = True
            self.upstream = None  # the tunnel owns it now
            conn.hand_over_to_tunnel(upstream, self._tunnel_closed)
            return
        upstream.attach(self, self._response_parser(upstream), conn)
        if conn.write_paused:
            upstream.pause_reading()
        if defer and conn.write_after_parse(self):
            self.deferred = True
            return
        self._write_pending(upstream)

    def _response_parser(self, upstream: UpstreamConnection) -> Any:
        """The connection's shared response parser, reading for this exchange now (ResponseCallbacks), or a new one
        (made shared when the connection has none and no read is being parsed on it)."""
        shared = upstream.shared_parser
        if shared is not None and not upstream.feeding:
            callbacks = cast(ResponseCallbacks, shared)
            if callbacks.at_message_start:
                callbacks.exchange = self
                return callbacks.parser
        callbacks = ResponseCallbacks(self)
        if not upstream.feeding:  # a parser left mid-message (bytes after a response) is replaced
            upstream.shared_parser = callbacks
        return callbacks.parser

    def send_deferred(self) -> None:
        """The client's read is parsed (or enough of its body is in): the request so far leaves in one write."""
        upstream = self.upstream
        if self.deferred:
            self.deferred = False
            if upstream is not None and self.pending is not None and not self.finished:
                self._write_pending(upstream)

    def _write_pending(self, upstream: UpstreamConnection) -> None:
        early = upstream.take_early()
        pending = self.pending
        self.pending = None
        assert upstream.transport is not None and pending is not None
        upstream.transport.writelines(pending)
        if self.pending_size > CONNECT_BUFFER_LIMIT:
            self.conn.resume_reading_for_buffer()
        self.pending_size = 0
        # Bytes sent before the request (an upstream that is not the HTTP server expected) are read as
        # the response, which the parser then judges; usually there are none.
        for data in early:
            upstream.data_received(data)

    # ------------------------------------------------------------------ response parser callbacks (ResponseCallbacks)
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
        route = self.plan.route
        if route is not None and route.retries is not None:
            if self._retry(None, status, _grpc_status(headers)):
                return  # this response is dropped (its parser's further callbacks find no upstream)
            if self.try_timer is not None:
                self.try_timer.cancel()
                self.try_timer = None
        if self.upgrade:  # declined: the bytes held for a tunnel are this request's body and more requests
            self.conn.upgrade_declined(self)
        ctx = self.ctx
        peer_lines = b""
        take = h.NO_TAKEN_NAMES
        if ctx is not None:
            if ctx.peer_headers:  # outbound: the answering sidecar's metadata, read and removed
                take = _PEER_TAKEN
            elif self.fields is not None and carries_peer_headers(self.fields):  # inbound: answer the caller's
                peer_lines = answer_lines(ctx.peer_answer, self.fields)
        self.response_head = headers
        scanned = h.response_headers(headers, take=take)
        if scanned.taken is not None:
            self._take_peer(scanned.taken)
        # Envoy's limit on names and values, measured on the lines built anyway (each adds ": " and CRLF).
        if len(scanned.lines) - 4 * len(headers) > h.MAX_HEAD_BYTES:
            self.upstream_malformed(httptools.HttpParserError("a response head of over 60 KiB"))
            return
        framing = b""
        if self.method != b"HEAD" and status not in (204, 304) and (scanned.chunked or not scanned.has_length):
            self.until_eof = not scanned.chunked
            if self.version == "1.1":
                self.chunk_out = True  # re-chunk what the parser de-chunked (or what runs to EOF)
                framing = b"transfer-encoding: chunked\r\n"
            else:
                self.keep_alive = False  # HTTP/1.0 client: the body ends when we close
        hop = self.plan.hop
        # A provider's responseHeaderForTraceId (inbound hops; empty otherwise).
        trace_line = hop.response_header_line if hop is not None else b""
        # The head's last lines in one formatted piece: compiled, one allocation (mypyc's CPyBytes_Build), where
        # `+=` on bytes and on the list are generic calls (callgrind).
        out = self.out
        out.append(h.status_line(status))
        out.append(scanned.lines)
        out.append(b"%s%s%s%s\r\n" % (framing, trace_line, peer_lines, self._connection_header()))
        self.response_started = True
        if self.method == b"HEAD":  # the parser cannot know a HEAD response has no body
            self._response_complete(reuse=False)

    def on_body(self, data: bytes) -> None:
        if self.finished or self.upstream is None:
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
        if self.finished or self.upgrading or self.upstream is None:
            return
        if self.chunk_out:
            self.out.append(h.LAST_CHUNK)
        upstream = self.upstream
        self._response_complete(reuse=upstream is not None and upstream.parser.should_keep_alive())

    # ------------------------------------------------------------------ upstream events (upstream.ResponseReader)
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
        self.upstream = None  # the tunnel owns it now
        self.conn.hand_over_to_tunnel(upstream, self._tunnel_closed)

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
        if not upstream.answered and self.reused and not self.retried and self.sent is not None:
            # The pooled connection was closed by its peer (keep-alive race): once more, on a fresh one.
            ctx.stats.inc("upstream.rq_retry")
            self.retried = True
            self.upstream = None
            self.conn.resume_reading_for_upstream()  # the dead connection will never resume it
            self.pending = list(self.sent)
            self.pending_size = self.sent_size
            self._connect()
            return
        if not upstream.answered and self._retry("reset"):
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

    def read_done(self) -> None:
        """upstream.ResponseReader's: the parser is done with a read (a def: mypyc compiles no method aliases)."""
        self.flush()

    def _response_complete(self, reuse: bool) -> None:
        ctx = self.ctx
        assert ctx is not None
        # The span ends before the last bytes leave: once they are written, the caller's proxy
        # may close its CLIENT span, and a SERVER span must lie within its CLIENT span.
        end_us = now_us()
        self.flush()
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            if reuse and self.request_done and not upstream.closed:
                self.conn.listener.pool.give(upstream)
            else:
                _drop_upstream(upstream)
        self._finish("-", end_us)
        self.conn.exchange_done(self, close=not (self.keep_alive and self.request_done))

    def fail(self, status: int, flag: str, body: str) -> None:
        """The upstream leg failed: a local reply if nothing was answered yet, else cut the downstream."""
        if self.finished:
            return
        if self.relay is not None:
            self.relay.fail(LocalReply(status, flag, body))
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
        end_us = now_us()
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
        if self.relay is not None:
            self.relay.downstream_lost()
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

    def close_after(self) -> None:
        """The connection closes after this response (draining), which says so (`connection: close`)."""
        self.keep_alive = False

    # ------------------------------------------------------------------ as the relay's downstream stream (seams.py)
    @property
    def info(self) -> DownstreamInfo:
        return self.conn.info

    def count(self, stat: str) -> None:
        self.conn.listener.count(stat)

    def send_headers(self, headers: HeaderList, end_stream: bool) -> None:
        """The relayed response's head, as HTTP/1.x: chunked when its length is unknown (HTTP/1.0: until close)."""
        status = 0
        has_length = False
        lines: list[bytes] = []
        for name, value in headers:
            if name == b":status":
                status = int(value)
                continue
            has_length = has_length or name == b"content-length"
            lines += (name, b": ", value, h.CRLF)
        self.status = status
        tail = b""
        if not end_stream and not has_length and self.method != b"HEAD" and status not in (204, 304):
            if self.version == "1.1":
                self.chunk_out = True
                tail = b"transfer-encoding: chunked\r\n"
            else:
                self.keep_alive = False
        tail += self._connection_header()
        self.out += (h.status_line(status), *lines, tail, h.CRLF)
        self.response_started = True

    def _connection_header(self) -> bytes:
        """The relayed response head's Connection line, whichever upstream answered (on_headers_complete,
        send_headers)."""
        if not self.request_done:
            # Answered before the request ended: the connection closes after the response, and says so (Envoy's
            # conn_manager_impl.cc, encodeHeaders: `!remoteDecodeComplete()` on HTTP/1 → drain, `connection: close`).
            self.keep_alive = False
        if not self.keep_alive:
            return b"connection: close\r\n"
        return b"connection: keep-alive\r\n" if self.version == "1.0" else b""

    def send_data(self, data: bytes, end_stream: bool) -> None:
        if self.chunk_out:
            if data:
                self.out.extend(h.chunked(data))
            if end_stream:
                self.out.append(h.LAST_CHUNK)
        elif data:
            self.out.append(data)

    def send_trailers(self, trailers: HeaderList) -> None:
        """HTTP/1.1 clients rarely take trailers: the body ends here."""
        self.send_data(b"", end_stream=True)

    def reset(self, error_code: int) -> None:
        """A response cut midway: so is the connection (HTTP/1.1 has no other way to say it)."""
        self.keep_alive = False
        self.out = []
        self.conn.abort()

    def acknowledge(self, size: int) -> None:
        self.unacknowledged -= size
        if self.unacknowledged <= CONNECT_BUFFER_LIMIT:
            self.conn.resume_reading_for_buffer()

    def done(self, reset_by_client: bool, lifetime_s: float) -> None:
        self.finished = True
        self.flush()
        self.conn.exchange_done(self, close=not (self.keep_alive and self.request_done))

    def _tunnel_closed(self, tunnel: Tunnel) -> None:
        self.request_done = True
        self._finish("-")
        self.conn.exchange_done(self, close=True)

    def _finish(self, flag: str, end_us: int | None = None) -> None:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None
        ctx = self.ctx
        if ctx is None:
            return
        if self.exhausted:
            flag = "URX" if flag == "-" else f"{flag},URX"
        head = self.head
        if head is None:
            return
        end = now_us() if end_us is None else end_us
        telemetry = ctx.telemetry
        response_head = self.response_head
        response: dict[str, str] = {}
        if response_head and telemetry is not None:
            if telemetry.reads_headers:
                for name, value in response_head:
                    lname = name.decode("latin-1").lower()
                    if not (ctx.peer_headers and lname in PEER_HEADERS):  # as forwarded: the metadata taken out
                        response[lname] = value.decode("latin-1")
            elif (grpc_status := _grpc_status(response_head)) is not None:  # the one header the labels read
                response = {GRPC_STATUS: grpc_status}
        finish_stream(ctx, self.conn.info, head, self.plan, self.start_us, StreamOutcome(
            status=self.status, flag=flag, request_size=self.request_size, response_size=self.response_size,
            end_us=end, response_headers=response, upstream_local=self.upstream_local,
            upstream_peer=self.upstream_peer))

    def _take_peer(self, taken: list[tuple[bytes, bytes]]) -> None:
        """The peer the metadata exchange headers taken out of the response describe."""
        for lname, value in taken:
            if lname == PEER_METADATA_BYTES:
                self.upstream_peer = decode_peer(value.decode("latin-1"))

    def _upstream_name(self) -> str:
        destination = self.plan.destination
        return f"{destination.host}:{destination.port}" if destination else "?"


class ResponseCallbacks:
    """The response parser's protocol for the exchanges an upstream connection carries in turn, each callback handed
    to the exchange reading now: a parser per connection, where one per request cost ~2.5k instructions to make and
    free (callgrind) and a call here costs ~40. Another exchange takes its parser only at a message's start
    (upstream.UpstreamConnection.shared_parser)."""

    __slots__ = ("at_message_start", "exchange", "parser")

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        # False from a message's first byte to its end: bytes after a response (a body sent with a 204, junk)
        # leave the parser mid-message, and the next exchange then takes a parser of its own.
        self.at_message_start = True
        self.parser: Any = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.at_message_start = False

    # No on_status: the standard reason phrase is sent, as Envoy does (one Python call less per response).
    def on_header(self, name: bytes, value: bytes) -> None:
        self.exchange.on_header(name, value)

    def on_headers_complete(self) -> None:
        self.exchange.on_headers_complete()

    def on_body(self, data: bytes) -> None:
        self.exchange.on_body(data)

    def on_message_complete(self) -> None:
        self.at_message_start = True
        self.exchange.on_message_complete()


def _length(pieces: tuple[bytes, ...]) -> int:
    """`sum(map(len, pieces))` as a compiled loop: from compiled code, map and sum are two generic calls (callgrind:
    ~1k instructions a send, two sends a request)."""
    total = 0
    for piece in pieces:
        total += len(piece)
    return total


def _grpc_status(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if len(name) == _GRPC_STATUS_LENGTH and name.lower() == GRPC_STATUS_BYTES:  # most names: no lower()
            return value.decode("latin-1")
    return None


def _drop_upstream(upstream: UpstreamConnection) -> None:
    upstream.detach()
    upstream.close()
