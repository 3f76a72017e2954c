"""One accepted client connection: sniff the protocol, parse HTTP/1.x requests, hand each to an Exchange.

Hot path. httptools' C parser calls the `on_*` methods here; requests are answered in order
(pipelined ones wait in `_queue`, with reading paused so the backlog stays one read deep).
Reading is paused for any of several reasons at once (a bitmask), so that flow control for
the upstream, the connect buffer and pipelining never undo each other.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Any, cast

import httptools

from tracemesh_sidecar.proxy.exchange import Exchange
from tracemesh_sidecar.proxy.headers import Header, local_reply
from tracemesh_sidecar.proxy.origdst import original_destination
from tracemesh_sidecar.proxy.sniff import classify
from tracemesh_sidecar.proxy.tunnel import Tunnel
from tracemesh_sidecar.proxy.upstream import set_nodelay

if TYPE_CHECKING:
    from tracemesh_sidecar.proxy.listeners import Listener
    from tracemesh_sidecar.proxy.upstream import UpstreamConnection

log = logging.getLogger("tracemesh.proxy")

_SNIFF, _HTTP, _WAIT, _TUNNEL, _CLOSED = range(5)
_PAUSE_PIPELINE, _PAUSE_UPSTREAM, _PAUSE_BUFFER = 1, 2, 4
_HELD_LIMIT = 256 * 1024
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "0.0.0.0", "::1", "::"})


class DownstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_eof",
        "_headers",
        "_held",
        "_open_task",
        "_paused",
        "_queue",
        "_receiving",
        "_sniff_timer",
        "_url",
        "current",
        "draining",
        "listener",
        "local",
        "mode",
        "original",
        "parser",
        "peer",
        "service_port",
        "transport",
        "tunnel",
        "tunnel_peer",
        "write_paused",
    )

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self.original: tuple[str, int] | None = None  # transparent outbound: where the client aimed
        self.service_port = listener.service_port  # inbound: the port the caller aimed at
        self.mode = _SNIFF
        self.parser: Any = None
        self.current: Exchange | None = None  # the exchange whose response is being sent
        self._receiving: Exchange | None = None  # the exchange whose request is being read
        self._queue: collections.deque[Exchange] = collections.deque()
        self._url = b""
        self._headers: list[Header] = []
        self._held: list[bytes] = []
        self._paused = 0
        self._eof = False
        self._open_task: asyncio.Task[None] | None = None
        self._sniff_timer: asyncio.TimerHandle | None = None
        self.write_paused = False
        self.draining = False
        self.tunnel: Tunnel | None = None
        self.tunnel_peer: asyncio.Transport | None = None

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        listener = self.listener
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.peer = (peer[0], peer[1]) if isinstance(peer, tuple) else ("", 0)
        self.local = (local[0], local[1]) if isinstance(local, tuple) else ("", 0)
        set_nodelay(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and listener.kind != "inbound-port":
            original = original_destination(sock)
            if original is not None and original != self.local:
                if listener.kind == "outbound":
                    self.original = original
                else:
                    self.service_port = original[1]
        listener.connection_opened(self)
        if (self.original if listener.kind == "outbound" else self.service_port) is not None:
            # Where a silent client's bytes could go: give up sniffing after Envoy's listener filter
            # timeout, so that a server that speaks first (MySQL, SMTP, SSH) gets to.
            timeout = listener.context().protocol_detection_timeout_s
            if timeout > 0:
                self._sniff_timer = asyncio.get_running_loop().call_later(timeout, self._sniff_timed_out)

    def data_received(self, data: bytes) -> None:
        mode = self.mode
        if mode == _HTTP:
            self._feed(data)
        elif mode == _TUNNEL:
            assert self.tunnel_peer is not None
            self.tunnel_peer.write(data)
        elif mode == _SNIFF:
            self._sniff(data)
        elif mode == _WAIT:
            self._hold(data)

    def eof_received(self) -> bool | None:
        if self.tunnel is not None:
            self.tunnel.ended(from_upstream=False)
            return True
        if self.mode == _WAIT:  # a tunnel being opened: pass the half-close on once it is up
            self._eof = True
            return True
        # HTTP: a client that ends its side has given up on what it asked (Envoy and nginx agree):
        # close, and a request in progress is reported with DC.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.mode = _CLOSED
        self._stop_sniff_timer()
        self.listener.connection_closed(self)
        if self._open_task is not None:
            self._open_task.cancel()
            self._open_task = None
        if self.tunnel is not None:
            self.tunnel.close()
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
        if self.tunnel is not None:
            return self.tunnel.upstream
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
            self.mode = _HTTP
            self.parser = httptools.HttpRequestParser(self)
            self._feed(buffered)
        else:
            self._pass_through(buffered)

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
            destination = self.original
        else:
            port = self.service_port
            app = None if port is None else listener.context().inbound.to_app(port)
            destination = None if app is None else (app.host, app.port)
        if destination is None:
            listener.count("downstream_rq_malformed")
            self._reply_and_close(400, "not an HTTP/1.x request, and no original destination to pass it to")
            return
        listener.count("downstream_cx_opaque")
        self.mode = _WAIT
        self._hold(first)
        self._open_task = asyncio.get_running_loop().create_task(self._open_tunnel(destination))

    async def _open_tunnel(self, destination: tuple[str, int]) -> None:
        context = self.listener.context()
        try:
            upstream = await context.pool.connect(destination, context.connect_timeout_s)
        except (OSError, TimeoutError) as error:
            self._open_task = None
            log.debug("opaque connection to %s:%d failed: %r", destination[0], destination[1], error)
            self.close()
            return
        self._open_task = None
        if self.mode == _CLOSED:
            upstream.close()
            return
        self.start_tunnel(Tunnel(self, upstream))

    def start_tunnel(self, tunnel: Tunnel) -> None:
        """Bytes from now on flow unparsed; what arrived after the request head goes first."""
        self.mode = _TUNNEL
        self.tunnel = tunnel
        held, self._held = self._held, []
        if held and self.tunnel_peer is not None:
            self.tunnel_peer.writelines(held)
        self._resume(_PAUSE_BUFFER)
        if self._eof:
            tunnel.ended(from_upstream=False)

    def _hold(self, data: bytes) -> None:
        if data:
            self._held.append(data)
            if sum(map(len, self._held)) > _HELD_LIMIT:
                self._pause(_PAUSE_BUFFER)

    # ------------------------------------------------------------------ HTTP/1.x
    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:  # CONNECT or Upgrade: the rest is not HTTP
            if self.mode == _HTTP:
                self.mode = _WAIT
                self._hold(data[upgrade.args[0]:])
        except httptools.HttpParserCallbackError:
            self.listener.count("downstream_cx_internal_error")
            log.exception("internal error on a connection from %s:%d; closing it", *self.peer)
            self.abort()
        except httptools.HttpParserError as error:
            self._malformed(error)

    def _malformed(self, error: Exception) -> None:
        self.listener.count("downstream_rq_malformed")
        log.debug("malformed request from %s:%d: %s", self.peer[0], self.peer[1], error)
        receiving = self._receiving
        if receiving is not None and receiving is self.current:
            receiving.fail(400, "DPE", "bad request")
        elif self.current is None:
            self._reply_and_close(400, "bad request")
        self.mode = _CLOSED
        self._queue.clear()
        self.close()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1").lower(), name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        exchange = Exchange(self, parser.get_method(), self._url, parser.get_http_version(), self._headers,
                            parser.should_keep_alive(), parser.should_upgrade())
        self._url = b""  # ready for the next request (instead of an on_message_begin callback)
        self._headers = []
        self._receiving = exchange
        if self.current is None:
            self.current = exchange
            exchange.start(self.listener.context())
        else:
            self._queue.append(exchange)
            self._pause(_PAUSE_PIPELINE)

    def on_body(self, body: bytes) -> None:
        receiving = self._receiving
        if receiving is not None:
            receiving.request_body(body)

    def on_message_complete(self) -> None:
        receiving = self._receiving
        self._receiving = None
        if receiving is not None:
            receiving.request_complete()

    def exchange_done(self, exchange: Exchange, close: bool) -> None:
        """`exchange` has answered: start the next pipelined one, or close."""
        if exchange is not self.current:
            return
        self.current = None
        if close or self.draining or self.mode != _HTTP:
            self._queue.clear()
            self.close()
            return
        # Whatever the finished exchange's upstream or buffer had paused no longer applies.
        self._resume(_PAUSE_UPSTREAM | _PAUSE_BUFFER)
        queue = self._queue
        while queue and self.current is None and self.mode == _HTTP:
            following = queue.popleft()
            self.current = following
            following.start(self.listener.context())
        if not queue:
            self._resume(_PAUSE_PIPELINE)

    # ------------------------------------------------------------------ ending
    def is_own_address(self, host: str, port: int) -> bool:
        return port == self.local[1] and (host == self.local[0] or host in _LOOPBACK_NAMES)

    def _reply_and_close(self, status: int, body: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(local_reply(status, body, close=True))
        self.close()

    def drain(self) -> None:
        """Shutdown: close now if idle, else after the response in progress."""
        self.draining = True
        if self.current is None and self.tunnel is None and self.mode != _WAIT:
            self.close()

    def close(self) -> None:
        self.mode = _CLOSED
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.mode = _CLOSED
        if self.transport is not None:
            self.transport.abort()
