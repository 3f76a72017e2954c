"""One request relayed between a downstream and an upstream stream of any HTTP versions (seams.py).

The version-free plan (stream.py) routes it; the upstream's HTTP version is the port's declared one, or
else the downstream's (Istio's protocol selection: `Destination.http2`). Body bytes are acknowledged to
one side only as the other side takes them, so a relayed stream holds at most about one window. The span
ends with the response: at its trailers for gRPC, so a server-streaming or bidirectional call is one span,
however many messages it carried. A request the upstream never processed (GOAWAY, REFUSED_STREAM, a reused
HTTP/1.1 connection closed before any answer) is sent once more on another connection when it is complete
and small enough to have been kept. HTTP/1.1 to HTTP/1.1 takes the specialised exchange.py instead.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Final

from tracemesh_sidecar.proxy.grpc import grpc_local_reply, grpc_timeout_s, is_grpc_request
from tracemesh_sidecar.proxy.headers import HOP_BY_HOP
from tracemesh_sidecar.proxy.seams import (
    INTERNAL_ERROR,
    DownstreamStream,
    HeaderList,
    StreamOpener,
    UpstreamStream,
)
from tracemesh_sidecar.proxy.stream import (
    RETRY_BUFFER_LIMIT,
    UC_BODY,
    UF_BODY,
    UH_BODY,
    UPE_BODY,
    UR_BODY,
    UT_BODY,
    LocalReply,
    RequestHead,
    StreamOutcome,
    StreamPlan,
    finish_stream,
    now_us,
)
from tracemesh_sidecar.telemetry.peer import (
    PEER_HEADER_BYTES,
    PEER_METADATA_BYTES,
    UNKNOWN_PEER,
    carries_peer_headers,
    decode_peer,
)
from tracemesh_sidecar.tracing.grpc import GRPC_STATUS_BYTES

if TYPE_CHECKING:
    from tracemesh_sidecar.proxy.state import DirectionContext

log = logging.getLogger("tracemesh.proxy")

# Connection-specific fields are malformed in HTTP/2 (RFC 9113 section 8.2.2); `te` may only say "trailers".
_CONNECTION_SPECIFIC: Final = frozenset(name.encode() for name in HOP_BY_HOP if name != "te")


class Relay:
    __slots__ = ("_body_kept", "_buffered", "_ctx", "_grpc", "_kept", "_request_held", "_response_held", "_retried",
                 "_timer", "downstream",
                 "downstream_http2", "finished", "grpc_message", "grpc_status", "head", "headers", "plan",
                 "request_done", "request_size", "response_fields", "response_size", "response_started", "start_us",
                 "status", "upstream", "upstream_local", "upstream_peer")

    def __init__(self, downstream: DownstreamStream, headers: HeaderList, ended: bool, downstream_http2: bool) -> None:
        """`headers`: the request's, HTTP/2's way (pseudo-headers first); `ended`: it has no body."""
        self.downstream = downstream
        self.downstream_http2 = downstream_http2
        self.headers = headers
        self.request_done = ended
        self.head: RequestHead | None = None
        self.plan = StreamPlan()
        self._ctx: DirectionContext | None = None
        self.start_us = 0
        self.upstream: UpstreamStream | None = None
        self.upstream_local: tuple[str, int] | None = None
        # Request data and trailers not yet given to an upstream stream (it is being opened).
        self._buffered: list[bytes | HeaderList] = []
        # The whole request as sent, for one more try on another connection (None past RETRY_BUFFER_LIMIT).
        self._kept: list[bytes | HeaderList] | None = []
        self._body_kept = 0
        # Body bytes taken from one side and not yet acknowledged to it (the other side has not taken them): given
        # back when the relay ends, whatever happened, or that side's connection window would shrink for good.
        self._request_held = 0
        self._response_held = 0
        self._retried = False
        self._timer: asyncio.TimerHandle | None = None
        self._grpc = False
        self.status = 0
        self.request_size = 0
        self.response_size = 0
        self.response_started = False
        self.response_fields: dict[str, str] = {}  # for metrics and access logs
        self.grpc_status: str | None = None
        self.grpc_message: str | None = None
        self.upstream_peer = UNKNOWN_PEER
        self.finished = False

    # ------------------------------------------------------------------ the request
    def start(self, ctx: DirectionContext, head: RequestHead, plan: StreamPlan, start_us: int) -> None:
        """Relay the request the downstream codec has read and planned (or answer the plan's local reply)."""
        self._ctx, self.head, self.plan, self.start_us = ctx, head, plan, start_us
        self._grpc = is_grpc_request(head.fields.get("content-type"))
        if plan.reply is not None:
            self._local_reply(plan.reply)
            return
        timeout = plan.timeout_s
        grpc_timeout = head.fields.get("grpc-timeout") if self._grpc else None
        if grpc_timeout is not None:
            # Istio sets max_grpc_timeout to the route's timeout (0: unlimited; route/route.go setTimeout), so
            # the client's deadline applies, capped by the route's.
            deadline = grpc_timeout_s(grpc_timeout)
            if deadline is not None and (not timeout or deadline < timeout):
                timeout = deadline
        if timeout:
            self._timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)
        self._open_upstream()

    def _forward_headers(self) -> HeaderList:
        head, plan, ctx = self.head, self.plan, self._ctx
        assert head is not None and ctx is not None
        remove = plan.remove_headers
        replaced = frozenset(name for name, _ in plan.set_headers)
        out: HeaderList = [(b":method", head.method.encode("latin-1")), (b":scheme", b"http"),
                           (b":authority", head.authority.encode("latin-1")),
                           (b":path", plan.path.encode("latin-1"))]
        for name, value in self.headers:
            if name[:1] == b":" or name in _CONNECTION_SPECIFIC or name in PEER_HEADER_BYTES:
                continue
            if name == b"host":  # :authority says it (RFC 9113 section 8.3.1)
                continue
            text_name = name.decode("latin-1")
            if text_name in remove or text_name in replaced:
                continue
            out.append((name, value))
        out.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in plan.set_headers)
        # The metadata exchange: ours on outbound requests; on inbound ones it is read, never shown to the app.
        out.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in ctx.peer_headers)
        return out

    def _opener(self) -> StreamOpener:
        """The upstream's HTTP version: its port's declared protocol, or else the downstream's (a sidecar's
        use_downstream_protocol for sniffed ports; Istio's gateways speak HTTP/1.1 to those)."""
        ctx, destination = self._ctx, self.plan.destination
        assert ctx is not None and destination is not None
        http2 = destination.http2
        if http2 is None:
            http2 = self.downstream_http2 and ctx.direction != "gateway"
        return ctx.http2_streams if http2 else ctx.http1_streams

    def _open_upstream(self) -> None:
        ctx, address = self._ctx, self.plan.upstream_address()
        assert ctx is not None and address is not None
        opener = self._opener()
        headers = self._forward_headers()
        stream = opener.open_now(address, headers, self._head_ends_request(), self)
        if stream is not None:
            self._attach(stream)
        else:
            asyncio.get_running_loop().create_task(self._connect(opener, address, headers))

    def _head_ends_request(self) -> bool:
        return self.request_done and not self._buffered

    async def _connect(self, opener: StreamOpener, address: tuple[str, int], headers: HeaderList) -> None:
        ctx = self._ctx
        assert ctx is not None
        try:
            # Whether the head ends the request is known only now: the body may have come while connecting.
            stream = await opener.open(address, ctx.connect_timeout_s, headers, self._head_ends_request(), self)
        except (OSError, TimeoutError) as error:
            log.debug("connect %s:%d failed: %r", address[0], address[1], error)
            self.fail(LocalReply(503, "UH", UH_BODY) if isinstance(error, socket.gaierror)
                       else LocalReply(503, "UF", UF_BODY))
            return
        if self.finished:
            stream.cancel()
            return
        self._attach(stream)

    def _attach(self, stream: UpstreamStream) -> None:
        """The stream is open with the request's head: what came of the body meanwhile follows."""
        self.upstream = stream
        self.upstream_local = stream.local
        buffered, self._buffered = self._buffered, []
        for item in buffered:
            if isinstance(item, bytes):
                stream.send_data(item, end_stream=False)
            else:
                stream.send_trailers(item)
        if self.request_done and buffered and not isinstance(buffered[-1], list):
            stream.send_data(b"", end_stream=True)
        stream.flush()

    def request_data(self, data: bytes, flow_controlled: int, end_stream: bool = False) -> None:
        """`end_stream`: these bytes end the request (HTTP/2's END_STREAM on the same frame)."""
        if self.finished:
            self.downstream.acknowledge(flow_controlled)
            return
        self.request_done = self.request_done or end_stream
        self.request_size += len(data)
        self._request_held += len(data)
        self.downstream.acknowledge(flow_controlled - len(data))  # padding: nothing to relay
        kept = self._kept
        if kept is not None:
            self._body_kept += len(data)
            if self._body_kept > RETRY_BUFFER_LIMIT:
                self._kept = None
            else:
                kept.append(data)
        upstream = self.upstream
        if upstream is None:
            self._buffered.append(data)
            return
        upstream.send_data(data, end_stream)
        upstream.flush()

    def request_data_left(self, size: int) -> None:
        """Request bytes reached the upstream: as many more may come from the client."""
        if self._retried:  # a replay of what was acknowledged the first time
            return
        self._request_held -= size
        self.downstream.acknowledge(size)
        self.downstream.flush()

    def request_trailers(self, trailers: HeaderList) -> None:
        self.request_done = True
        if self.finished:
            return
        if self._kept is not None:
            self._kept.append(trailers)
        if self.upstream is None:
            self._buffered.append(trailers)
            return
        self.upstream.send_trailers(trailers)
        self.upstream.flush()

    def request_ended(self) -> None:
        if self.request_done:  # ended with its headers or trailers: already said
            return
        self.request_done = True
        if self.finished or self.upstream is None:
            return
        self.upstream.send_data(b"", end_stream=True)
        self.upstream.flush()

    # ------------------------------------------------------------------ the response (seams.UpstreamOwner)
    def response_headers(self, headers: HeaderList, ended: bool) -> None:
        if self.finished:
            return
        ctx = self._ctx
        assert ctx is not None
        out: HeaderList = []
        for name, value in headers:
            if name == b":status":
                self.status = int(value) if value.isdigit() else 0
                continue
            if name in _CONNECTION_SPECIFIC:
                continue
            elif name in PEER_HEADER_BYTES:
                if ctx.peer_headers and name == PEER_METADATA_BYTES:  # outbound: the answering sidecar's
                    self.upstream_peer = decode_peer(value.decode("latin-1"))
                continue
            self.response_fields[name.decode("latin-1")] = value.decode("latin-1")
            out.append((name, value))
        if self.status < 200:
            self.fail(LocalReply(502, "UPE", UPE_BODY))
            return
        hop = self.plan.hop
        if hop is not None and hop.response_header_line:  # a provider's responseHeaderForTraceId
            name, _, value = hop.response_header_line.rstrip(b"\r\n").partition(b": ")
            out.append((name.lower(), value))
        head = self.head
        if ctx.peer_answer_headers and head is not None and carries_peer_headers(head.fields):
            out.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in ctx.peer_answer_headers)
        if ended:
            self._grpc_outcome(headers)
        self.response_started = True
        end_us = now_us() if ended else 0
        self.downstream.send_headers([(b":status", str(self.status).encode()), *out], end_stream=ended)
        if ended:
            self._finish("-", end_us)

    def response_data(self, data: bytes, flow_controlled: int, end_stream: bool) -> None:
        upstream = self.upstream
        if self.finished or upstream is None:
            return
        if flow_controlled > len(data):  # padding: nothing to relay
            upstream.acknowledge(flow_controlled - len(data))
            upstream.flush()
        self.response_size += len(data)
        self._response_held += len(data)
        end_us = now_us() if end_stream else 0  # the span ends before the last bytes leave (see _finish)
        self.downstream.send_data(data, end_stream)
        if end_stream:
            self._finish("-", end_us)

    def read_done(self) -> None:
        self.downstream.flush()

    def response_data_left(self, size: int) -> None:
        """Response bytes reached the client: as many more may come from the upstream."""
        upstream = self.upstream
        if upstream is not None:
            self._response_held -= size
            upstream.acknowledge(size)
            upstream.flush()

    def response_trailers(self, trailers: HeaderList) -> None:
        if self.finished:
            return
        self._grpc_outcome(trailers)
        end_us = now_us()  # the span ends at the trailers, before they leave (see _finish)
        self.downstream.send_trailers([(n, v) for n, v in trailers if n not in _CONNECTION_SPECIFIC])
        self._finish("-", end_us)

    def response_ended(self) -> None:
        if self.finished:
            return
        end_us = now_us()
        self.downstream.send_data(b"", end_stream=True)
        self._finish("-", end_us)

    def upstream_reset(self, error_code: int) -> None:
        if self.finished:
            return
        if not self.response_started:
            self.fail(LocalReply(503, "UR", UR_BODY))
            return
        self.downstream.reset(error_code)
        self._finish("UR")
        self.downstream.flush()

    def upstream_malformed(self, reason: str) -> None:
        log.info("upstream %s sent a malformed response: %s", self.plan.upstream_address(), reason)
        self.fail(LocalReply(502, "UPE", UPE_BODY))  # Envoy >= 1.18: an upstream protocol error is a 502

    def upstream_lost(self, unprocessed: bool) -> None:
        if self.finished:
            return
        ctx = self._ctx
        assert ctx is not None
        self.upstream = None
        if not self.response_started and not self._retried and self._kept is not None and self.request_done \
                and unprocessed:
            # Never processed: once more, on another connection, as Envoy retries refused and unprocessed streams.
            ctx.stats.inc("upstream.rq_retry")
            self._retried = True
            kept, self._kept = self._kept, []
            self._buffered = kept
            self._open_upstream()
            return
        if not self.response_started:
            self.fail(LocalReply(503, "UC", UC_BODY))
            return
        self.downstream.reset(INTERNAL_ERROR)
        self._finish("UC")
        self.downstream.flush()

    # ------------------------------------------------------------------ the downstream side ending
    def downstream_reset(self) -> None:
        """The client reset the stream (RST_STREAM): the upstream stream is cancelled."""
        if self.finished:
            return
        if not self.response_started:
            self.status = 0
        self._finish("DC", reset_by_client=True)

    def downstream_lost(self) -> None:
        if self.finished:
            return
        if not self.response_started:
            self.status = 0
        self._finish("DC")

    def _timed_out(self) -> None:
        self._timer = None
        self.fail(LocalReply(504, "UT", UT_BODY))

    # ------------------------------------------------------------------ ending
    def _local_reply(self, reply: LocalReply) -> None:
        """Answer `reply` ourselves (nothing was sent downstream yet)."""
        end_us = now_us()
        if self._grpc:
            block = grpc_local_reply(reply.status, reply.body)
            self._grpc_outcome(block)
            self.status = 200  # what the client saw, and what Envoy's span reports (proxy/grpc.py)
            self.downstream.send_headers(block, end_stream=True)
        else:
            body = reply.body.encode()
            self.status = reply.status
            self.response_size = len(body)
            self.downstream.send_headers([
                (b":status", str(reply.status).encode()), (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode())], end_stream=not body)
            if body:
                self.downstream.send_data(body, end_stream=True)
        self.response_started = True
        self._finish(reply.flag, end_us)
        self.downstream.flush()

    def fail(self, reply: LocalReply) -> None:
        """The upstream leg failed: a local reply if nothing was answered yet, else the stream is reset."""
        if self.finished:
            return
        if not self.response_started:
            self._local_reply(reply)
            return
        self.downstream.reset(INTERNAL_ERROR)
        self._finish(reply.flag)
        self.downstream.flush()

    def _grpc_outcome(self, headers: HeaderList) -> None:
        for name, value in headers:
            if name == GRPC_STATUS_BYTES:
                self.grpc_status = value.decode("latin-1")
            elif name == b"grpc-message":
                self.grpc_message = value.decode("latin-1")

    def _lifetime_s(self) -> float:
        return (now_us() - self.start_us) / 1e6

    def _finish(self, flag: str, end_us: int = 0, reset_by_client: bool = False) -> None:
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            if self._response_held > 0:  # what the client has yet to take stays queued for it; the window goes back
                upstream.acknowledge(self._response_held)
                self._response_held = 0
            if flag != "-":
                upstream.cancel()
            upstream.flush()
        if self._request_held > 0:
            self.downstream.acknowledge(self._request_held)
            self._request_held = 0
        ctx, head = self._ctx, self.head
        if ctx is not None and head is not None:
            outcome = StreamOutcome(
                status=self.status, flag=flag, request_size=self.request_size, response_size=self.response_size,
                end_us=end_us or now_us(), response_headers=self.response_fields, grpc_status=self.grpc_status,
                grpc_message=self.grpc_message, upstream_local=self.upstream_local,
                upstream_peer=self.upstream_peer)
            finish_stream(ctx, self.downstream.info, head, self.plan, self.start_us, outcome)
        self.downstream.done(reset_by_client, self._lifetime_s())

