"""One side of an HTTP/2 connection: the `h2` state machine over an asyncio transport, and flow-controlled sends.

Shared by the downstream (server) and upstream (client) connections. What a stream sends waits here, per
stream, until the peer's window lets it out; the stream's owner hears of each piece that left
(`_data_left`), and only then acknowledges as many bytes to the other side: a relayed stream holds at
most one window, whichever side is slow.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Final, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
import hpack
from hyperframe.frame import Frame, HeadersFrame, RstStreamFrame

from tracemesh_sidecar.proxy.http2.limits import (
    LOCAL_SETTINGS,
    MAX_CONCURRENT_STREAMS,
    MAX_FRAME_SIZE,
    MAX_HEADER_LIST_SIZE,
)

log = logging.getLogger("tracemesh.proxy")

HeaderList = list[tuple[bytes, bytes]]
_TRAILERS: Final = 1
_DATA: Final = 0


class _RefusingConnection(h2.connection.H2Connection):
    """h2 takes a stream past our MAX_CONCURRENT_STREAMS for a connection error (GOAWAY); RFC 9113 section 5.1.2 lets
    it be a stream error, and Envoy's codecs refuse that stream alone (RST_STREAM REFUSED_STREAM, which a client may
    retry), also before the client has acknowledged our SETTINGS. h2 has no hook for it: this overrides its handler
    of HEADERS frames (h2 4.x), decoding the refused block all the same so that HPACK's table stays in step."""

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list[Frame], list[h2.events.Event]]:
        stream_id = frame.stream_id
        if stream_id not in self.streams and stream_id > self.highest_inbound_stream_id \
                and stream_id % 2 == 1 and self.open_inbound_streams >= MAX_CONCURRENT_STREAMS:
            list(h2.connection._decode_headers(self.decoder, frame.data))
            self.highest_inbound_stream_id = stream_id
            self._closed_streams[stream_id] = h2.stream.StreamClosedBy.SEND_RST_STREAM
            refusal = RstStreamFrame(stream_id)
            refusal.error_code = h2.errors.ErrorCodes.REFUSED_STREAM
            return [refusal], []
        return super()._receive_headers_frame(frame)


_NEVER_INDEXED: Final = frozenset({b"authorization", b"proxy-authorization", b"cookie"})


class _PlainEncoding:
    """hpack's Encoder.encode without Huffman coding (in pure Python it costs more CPU than the bytes it saves
    are worth between a pod's proxy and its app or the next sidecar), with the credentials h2's outbound
    normalisation would keep out of the shared compression table kept out of it (never indexed)."""

    __slots__ = ("_encode",)

    def __init__(self, encoder: hpack.Encoder) -> None:
        self._encode = encoder.encode

    def __call__(self, headers: HeaderList, huffman: bool = True) -> bytes:
        return self._encode([hpack.NeverIndexedHeaderTuple(name, value) if name in _NEVER_INDEXED else (name, value)
                             for name, value in headers], huffman=False)


class Http2Endpoint:
    """The h2 connection, its transport, and the sends each stream has waiting for window."""

    def __init__(self, client_side: bool) -> None:
        # What the proxy sends is built from headers h2 has validated and lowercased on the way in (or the HTTP/1
        # codec has), plus names of our own: h2's checks and normalisation of them again cost a tenth of a request.
        config = h2.config.H2Configuration(client_side=client_side, header_encoding=None,
                                           validate_inbound_headers=True, normalize_inbound_headers=True,
                                           validate_outbound_headers=False, normalize_outbound_headers=False)
        self.h2 = h2.connection.H2Connection(config=config) if client_side else _RefusingConnection(config=config)
        self.h2.encoder.encode = _PlainEncoding(self.h2.encoder)  # type: ignore[method-assign,assignment]
        self.h2.local_settings = h2.settings.Settings(client=client_side, initial_values=LOCAL_SETTINGS)
        # Our limit on a peer's header block, enforced while decoding (an HPACK bomb stops there).
        self.h2.decoder.max_header_list_size = MAX_HEADER_LIST_SIZE
        self.transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_due = False
        # Per stream: (kind, data or trailers, end_stream) waiting for the peer's window.
        self._waiting: dict[int, collections.deque[tuple[int, bytes | HeaderList, bool]]] = {}

    def _attach(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self._loop = asyncio.get_running_loop()

    def receive(self, data: bytes) -> list[h2.events.Event]:
        """The events `data` completes; raises h2's ProtocolError (its GOAWAY queued) for a peer breaking HTTP/2.

        h2 checks a frame's length only once the whole frame is buffered: a header announcing 16 MiB would make
        it buffer 16 MiB first. The frame it waits for is checked here, at once (FRAME_SIZE_ERROR).
        """
        events = self.h2.receive_data(data)
        pending = self.h2.incoming_buffer  # what h2 buffers (its FrameBuffer's fields: h2 4.x) starts a frame
        if len(pending._data) >= 9 and not pending._preamble_len \
                and int.from_bytes(pending._data[:3], "big") > MAX_FRAME_SIZE:
            self.h2.close_connection(error_code=h2.errors.ErrorCodes.FRAME_SIZE_ERROR)
            raise h2.exceptions.FrameTooLargeError("a frame over MAX_FRAME_SIZE announced")
        return events

    def flush(self) -> None:
        """Write the frames h2 has prepared, at the end of this turn of the loop: what the connection's streams
        produce while a read is handled (several streams' headers and data) leaves in one write."""
        if not self._flush_due and self._loop is not None:
            self._flush_due = True
            self._loop.call_soon(self.flush_now)

    def flush_now(self) -> None:
        """Write the frames h2 has prepared now (before the transport closes)."""
        self._flush_due = False
        data = self.h2.data_to_send()
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    # -- sending, within the peer's windows
    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        waiting = self._waiting.get(stream_id)
        if waiting is not None:
            waiting.append((_DATA, data, end_stream))
            return
        self._waiting[stream_id] = collections.deque([(_DATA, data, end_stream)])
        self._send_waiting(stream_id)

    def send_trailers(self, stream_id: int, trailers: HeaderList) -> None:
        """Trailers end the stream, after whatever data waits before them."""
        waiting = self._waiting.get(stream_id)
        if waiting is not None:
            waiting.append((_TRAILERS, trailers, True))
            return
        self.send_headers(stream_id, trailers, end_stream=True)

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        self._waiting.pop(stream_id, None)
        with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):  # already closed
            self.h2.reset_stream(stream_id, error_code)

    def acknowledge(self, stream_id: int, size: int) -> None:
        """`size` flow-controlled bytes of `stream_id` are consumed: h2 reopens the window when it is worth it."""
        if size <= 0:
            return
        # KeyError, ProtocolError: the stream is gone; h2 credited the connection window when it closed.
        with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):
            self.h2.acknowledge_received_data(size, stream_id)

    def forget(self, stream_id: int) -> None:
        self._waiting.pop(stream_id, None)

    def window_opened(self, stream_id: int) -> None:
        """A WINDOW_UPDATE or a SETTINGS change: send what waited (every stream's, for the connection's)."""
        if stream_id:
            if stream_id in self._waiting:
                self._send_waiting(stream_id)
            return
        for waiting_id in list(self._waiting):
            self._send_waiting(waiting_id)

    def _send_waiting(self, stream_id: int) -> None:
        waiting = self._waiting.get(stream_id)
        h2conn = self.h2
        while waiting:
            kind, payload, end_stream = waiting[0]
            if kind == _TRAILERS:
                waiting.popleft()
                self.send_headers(stream_id, cast(HeaderList, payload), end_stream=True)
                continue
            data = cast(bytes, payload)
            try:
                window = min(h2conn.local_flow_control_window(stream_id), h2conn.max_outbound_frame_size)
            except (h2.exceptions.ProtocolError, KeyError):
                self._waiting.pop(stream_id, None)
                return
            if data and window <= 0:
                return  # WindowUpdated will call again
            piece, rest = data[:window], data[window:]
            try:
                h2conn.send_data(stream_id, piece, end_stream=end_stream and not rest)
            except (h2.exceptions.ProtocolError, KeyError):
                self._waiting.pop(stream_id, None)
                return
            if rest:
                waiting[0] = (_DATA, rest, end_stream)
            else:
                waiting.popleft()
            if piece:
                self._data_left(stream_id, len(piece))
        if waiting is not None and not waiting:
            del self._waiting[stream_id]

    def send_headers(self, stream_id: int, headers: HeaderList, end_stream: bool) -> None:
        try:
            self.h2.send_headers(stream_id, headers, end_stream=end_stream)
        except (h2.exceptions.ProtocolError, KeyError) as error:
            log.debug("HTTP/2 stream %d: headers not sent: %s", stream_id, error)
            self._waiting.pop(stream_id, None)

    def _data_left(self, stream_id: int, size: int) -> None:
        """`size` bytes of `stream_id`'s data went out (subclasses tell the stream's owner)."""
