"""An HTTP/2 client connection (h2c): its streams, each relayed by a Relay (proxy/relay.py).

The HTTP/1 connection that sniffed the HTTP/2 preface, or that accepted an `Upgrade: h2c` request,
hands its transport over (`transport.set_protocol`) with what it had read; from then on this protocol
owns the connection. Hostile peers meet h2's checks (HPACK limits, CONTINUATION backlog, window
overflow: a GOAWAY and the connection closes) and ours: a header list over 60 KiB or 100 headers, and
rapid resets (limits.PrematureResets). A client that does not read what we write stops being read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import h2.errors
import h2.events
import h2.exceptions

from tracemesh_sidecar.proxy.headers import MAX_HEADERS
from tracemesh_sidecar.proxy.http2.endpoint import Http2Endpoint
from tracemesh_sidecar.proxy.http2.limits import PrematureResets
from tracemesh_sidecar.proxy.relay import Relay
from tracemesh_sidecar.proxy.seams import HeaderList
from tracemesh_sidecar.proxy.state import DownstreamInfo, ListenerHandle
from tracemesh_sidecar.proxy.stream import (
    HEADERS_TOO_LARGE_BODY,
    LocalReply,
    RequestHead,
    StreamPlan,
    now_us,
    plan_request,
)

log = logging.getLogger("tracemesh.proxy")


@dataclass(frozen=True, slots=True)
class H2cUpgrade:
    """An HTTP/1.1 request that asked for `Upgrade: h2c`: it becomes stream 1 (RFC 7540 section 3.2)."""

    settings: bytes  # its HTTP2-Settings header
    headers: HeaderList  # the request as HTTP/2 headers, pseudo-headers first


class Http2DownstreamConnection(Http2Endpoint, asyncio.Protocol):
    def __init__(self, listener: ListenerHandle, info: DownstreamInfo) -> None:
        super().__init__(client_side=False)
        self.listener = listener
        self.info = info  # what the HTTP/1 connection learnt when it was accepted
        self.streams: dict[int, Relay] = {}
        self._resets = PrematureResets()
        self._going_away = False
        self._closed = False

    # -- taking the connection over
    def take_over(self, transport: asyncio.BaseTransport, received: bytes, upgrade: H2cUpgrade | None) -> None:
        self._attach(transport)
        self.listener.count("downstream_cx_http2_total")
        if upgrade is None:
            self.h2.initiate_connection()
        else:
            self.h2.initiate_upgrade_connection(upgrade.settings)
        self.flush()
        if upgrade is not None:
            self._start_stream(1, upgrade.headers, ended=True)
        if received:
            self.data_received(received)

    # -- asyncio.Protocol
    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            events = self.receive(data)
        except h2.exceptions.ProtocolError as error:
            # h2 has queued its GOAWAY (PROTOCOL_ERROR, FLOW_CONTROL_ERROR, COMPRESSION_ERROR, ENHANCE_YOUR_CALM).
            log.debug("HTTP/2 protocol error from %s:%d: %s", *self.info.peer, error)
            self.listener.count("downstream_cx_protocol_error")
            self.close()
            return
        for event in events:
            self._dispatch(event)
            if self._closed:
                return
        # What this read asks of this connection (ACKs, answers relayed at once) is written now, not corked: a
        # client that does not read then makes the write buffer fill, and reading pause, after one read.
        self.flush_now()

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            stream_id = event.stream_id or 0
            relay = self.streams.get(stream_id)
            if relay is not None:
                relay.request_data(event.data or b"", event.flow_controlled_length or 0, event.stream_ended is not None)
            else:
                self.acknowledge(stream_id, event.flow_controlled_length or 0)
        elif isinstance(event, h2.events.RequestReceived):
            self._start_stream(event.stream_id or 0, list(event.headers or ()), event.stream_ended is not None)
        elif isinstance(event, h2.events.StreamEnded):
            relay = self.streams.get(event.stream_id or 0)
            if relay is not None:
                relay.request_ended()
        elif isinstance(event, h2.events.TrailersReceived):
            relay = self.streams.get(event.stream_id or 0)
            if relay is not None:
                relay.request_trailers(list(event.headers or ()))
        elif isinstance(event, h2.events.StreamReset):
            self.forget(event.stream_id or 0)
            relay = self.streams.get(event.stream_id or 0)
            if relay is not None:
                relay.downstream_reset()
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self.window_opened(getattr(event, "stream_id", 0) or 0)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._going_away = True
            if not self.streams:
                self.close()

    def _start_stream(self, stream_id: int, headers: HeaderList, ended: bool) -> None:
        ctx = self.listener.context()
        start_us = now_us()
        ctx.rq_total.inc()
        head, count = _request_head(headers)
        if count > MAX_HEADERS:  # as HTTP/1.1's limit (Envoy's max_headers_count)
            self.listener.count("downstream_rq_headers_too_large")
            plan = StreamPlan(reply=LocalReply(431, "DPE", HEADERS_TOO_LARGE_BODY))
        else:
            plan = plan_request(ctx, self.info, head, start_us)
        relay = Relay(Http2DownstreamStream(self, stream_id), headers, ended, downstream_http2=True)
        self.streams[stream_id] = relay
        relay.start(ctx, head, plan, start_us)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.listener.connection_closed(self)
        streams, self.streams = self.streams, {}
        for relay in streams.values():
            relay.downstream_lost()

    def pause_writing(self) -> None:
        # The client does not read (a PING or SETTINGS flood's answers pile up, or a slow reader): read no more
        # from it until it does, so nothing it sends can grow our buffers.
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- used by the relays
    def stream_done(self, stream_id: int, reset_by_client: bool, lifetime_s: float) -> None:
        self.streams.pop(stream_id, None)  # response data still waiting for the client's window stays queued
        if self._resets.stream_closed(reset_by_client, lifetime_s):
            self.listener.count("downstream_rq_too_many_premature_resets")
            log.info("closing an HTTP/2 connection from %s:%d: too many premature stream resets", *self.info.peer)
            self.abort()
            return
        if self._going_away and not self.streams:
            self.close()

    def _data_left(self, stream_id: int, size: int) -> None:
        relay = self.streams.get(stream_id)
        if relay is not None:
            relay.response_data_left(size)

    # -- draining and ending (the ConnectionBook's session interface)
    def discourage(self) -> None:
        """Draining: GOAWAY (NO_ERROR) tells the client to open no more streams; the open ones finish."""
        if not self._going_away and not self._closed:
            self._going_away = True
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR)
            self.flush()

    def drain(self) -> None:
        self.discourage()
        if not self.streams:
            self.close()

    def close(self) -> None:
        self._closed = True
        if self.transport is not None:
            self.flush_now()  # a GOAWAY h2 queued goes before the close
            self.transport.close()

    def abort(self) -> None:
        self._closed = True
        if self.transport is not None:
            self.transport.abort()


def _request_head(headers: HeaderList) -> tuple[RequestHead, int]:
    """The request HTTP/2's way (h2 has validated its pseudo-headers) as every version sees it, and how many
    regular headers it has. Repeated headers are joined with ", " (cookies with "; ", RFC 9113 section 8.2.3)."""
    method = path = authority = ""
    fields: dict[str, str] = {}
    count = 0
    for name, value in headers:
        if name[:1] == b":":
            if name == b":method":
                method = value.decode("latin-1")
            elif name == b":path":
                path = value.decode("latin-1")
            elif name == b":authority":
                authority = value.decode("latin-1")
            continue
        count += 1
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        previous = fields.get(key)
        fields[key] = text if previous is None else f"{previous}{'; ' if key == 'cookie' else ', '}{text}"
    return RequestHead(method, path, path, authority or fields.get("host", ""), "HTTP/2", fields), count


class Http2DownstreamStream:
    """One stream of an HTTP/2 client connection, as the relay sees it (seams.DownstreamStream)."""

    __slots__ = ("_conn", "_stream_id")

    def __init__(self, conn: Http2DownstreamConnection, stream_id: int) -> None:
        self._conn = conn
        self._stream_id = stream_id

    @property
    def info(self) -> DownstreamInfo:
        return self._conn.info

    def count(self, stat: str) -> None:
        self._conn.listener.count(stat)

    def send_headers(self, headers: HeaderList, end_stream: bool) -> None:
        self._conn.send_headers(self._stream_id, headers, end_stream)

    def send_data(self, data: bytes, end_stream: bool) -> None:
        self._conn.send_data(self._stream_id, data, end_stream)

    def send_trailers(self, trailers: HeaderList) -> None:
        self._conn.send_trailers(self._stream_id, trailers)

    def reset(self, error_code: int) -> None:
        self._conn.reset_stream(self._stream_id, error_code)

    def acknowledge(self, size: int) -> None:
        self._conn.acknowledge(self._stream_id, size)

    def flush(self) -> None:
        self._conn.flush()

    def done(self, reset_by_client: bool, lifetime_s: float) -> None:
        self._conn.stream_done(self._stream_id, reset_by_client, lifetime_s)
