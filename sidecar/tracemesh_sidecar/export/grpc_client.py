"""Export over OTLP/gRPC: unary `TraceService/Export` calls on one HTTP/2 connection, spoken with h2 on the
proxy's own event loop (uvloop), reconnecting when the connection breaks.

Why h2 rather than grpcio's aio API: this client runs in every sidecar, and a sidecar must stay within
60 MB RSS. `python -m bench exporter_clients` runs both in a process that has loaded what a sidecar
loads (45 MB) under uvloop, making 200 Export calls of 512 spans (110 KB) to a grpcio server. Measured
on the 2-core dev machine: h2 added 0.5 MB of peak RSS and 0.9 ms CPU per call; grpcio's aio client
added 12.5 MB (its C core, threads and poller: 58 MB in all, next to the limit) and 0.7 ms per call.
An exporter makes at most a couple of calls a second, so the 0.2 ms is noise while grpcio's 12 MB
would be paid by every pod. h2 (pure Python: h2, hpack, hyperframe) also keeps the call on the
proxy's own loop, with no second I/O engine to start or shut down.

What gRPC asks of a client and this one does: `te: trailers`, `grpc-timeout` from the remaining deadline,
metadata as lowercase headers, HTTP/2 flow control on the request, Trailers-Only answers, RST_STREAM
mapped to a status, GOAWAY honoured (no new call on a closing connection). The status' retry verdict
is the OTLP specification's (grpc_wire.RpcStatus.retryable).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes

from tracemesh_sidecar.config.model import ProviderConfig
from tracemesh_sidecar.export.collector_client import (
    RESPONSE_BODY_LIMIT,
    ExportOutcome,
    PhaseTimedOut,
    accepted,
    phase_timeout,
)
from tracemesh_sidecar.export.grpc_wire import (
    GrpcWireError,
    RpcStatus,
    StatusCode,
    frame,
    request_headers,
    response_status,
    unframe,
)
from tracemesh_sidecar.export.wire import WireFormat

# RST_STREAM error code -> status, as gRPC's PROTOCOL-HTTP2.md maps them.
_RESET_STATUS = {ErrorCodes.REFUSED_STREAM: StatusCode.UNAVAILABLE, ErrorCodes.CANCEL: StatusCode.CANCELLED,
                 ErrorCodes.ENHANCE_YOUR_CALM: StatusCode.RESOURCE_EXHAUSTED,
                 ErrorCodes.INADEQUATE_SECURITY: StatusCode.PERMISSION_DENIED}


class ConnectionUnusable(ConnectionError):
    """The connection cannot carry a new call (closed, or the server sent GOAWAY)."""


class GrpcCollectorClient:
    """Calls `TraceService/Export` on one provider over a lazily opened, reused HTTP/2 connection."""

    def __init__(self, provider: ProviderConfig, wire: WireFormat) -> None:
        self.url = provider.url
        self._host, self._port = provider.service, provider.port
        self._authority = f"{provider.service}:{provider.port}"
        self._timeout_s = provider.timeout_s
        self._connect_timeout_s = provider.connect_timeout_s
        self._phase_timeouts = (provider.send_timeout_s, provider.read_timeout_s)
        self._metadata = provider.headers
        self._wire = wire
        self._connection: _Connection | None = None

    async def export(self, body: bytes) -> ExportOutcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                connection = await self._connected()
                headers = request_headers(self._authority, deadline - loop.time(), self._metadata)
                status, message = await connection.call(headers, frame(body), *self._phase_timeouts)
        except PhaseTimedOut as error:
            self._drop_connection()  # as for the total: the connection may be black-holed
            return ExportOutcome(sent=False, retryable=True, error=f"gRPC DEADLINE_EXCEEDED: {error}")
        except TimeoutError:
            # The next call starts on a new connection: this one may be black-holed (a collector pod gone
            # without a reset), and only a new connection finds out without keepalive pings.
            self._drop_connection()
            return ExportOutcome(sent=False, retryable=True,
                                 error=f"gRPC DEADLINE_EXCEEDED: no answer within {self._timeout_s:g} s")
        except (OSError, h2.exceptions.H2Error) as error:  # ConnectionUnusable is an OSError
            self._drop_connection()
            return ExportOutcome(sent=False, retryable=True,
                                 error=f"gRPC UNAVAILABLE: {type(error).__name__}: {error}")
        if status.code != StatusCode.OK:
            return ExportOutcome(sent=False, retryable=status.retryable, error=status.describe(),
                                 retry_after_s=status.retry_delay_s)
        try:
            return accepted(self._wire.partial_success(unframe(message)))
        except GrpcWireError as error:  # the collector answered OK: the spans are there, its answer is odd
            return ExportOutcome(sent=True, error=str(error))

    async def _connected(self) -> _Connection:
        if self._connection is not None and self._connection.usable:
            return self._connection
        self._drop_connection()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, connection = await loop.create_connection(_Connection, self._host, self._port)
        except TimeoutError:
            raise ConnectionUnusable(f"connect to {self._authority} timed out after "
                                     f"{self._connect_timeout_s:g} s") from None
        self._connection = connection
        return connection

    def _drop_connection(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()

    async def close(self) -> None:
        self._drop_connection()


@dataclass
class _Stream:
    answered: asyncio.Future[tuple[RpcStatus, bytes]]
    http_status: int = 0
    headers: dict[str, str] = field(default_factory=dict)  # response headers and trailers together
    data: bytearray = field(default_factory=bytearray)


class _Connection(asyncio.Protocol):
    """One HTTP/2 client connection: h2's state machine fed by the transport, calls as streams."""

    def __init__(self) -> None:
        self._h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, _Stream] = {}
        self._send_window = asyncio.Event()  # set when a flow-control window may have opened (or a call ended)
        self._goaway = False

    @property
    def usable(self) -> bool:
        return self._transport is not None and not self._transport.is_closing() and not self._goaway

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self._h2.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            # Not (or no longer) speaking HTTP/2: a connection failure, UNAVAILABLE as gRPC's own clients report it.
            self._fail_streams(StatusCode.UNAVAILABLE, f"HTTP/2 protocol error from the collector: {error}")
            self.close()
            return
        for event in events:
            self._handle(event)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"{type(exc).__name__}: {exc}" if exc else "closed by the collector"
        self._fail_streams(StatusCode.UNAVAILABLE, f"connection lost ({reason})")
        self._transport = None

    def _handle(self, event: h2.events.Event) -> None:
        stream = self._streams.get(getattr(event, "stream_id", 0))
        if isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self._send_window.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._goaway = True  # calls the server has not seen are refused: they may be retried elsewhere
            for stream_id, refused in list(self._streams.items()):
                if stream_id > (event.last_stream_id or 0):
                    self._settle(refused, RpcStatus(StatusCode.UNAVAILABLE, "the collector sent GOAWAY"))
        elif stream is None:
            return
        elif isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            headers = dict(_text_headers(event.headers or []))
            if isinstance(event, h2.events.ResponseReceived):
                stream.http_status = int(headers.get(":status", "0"))
            stream.headers.update(headers)
        elif isinstance(event, h2.events.DataReceived):
            stream.data += event.data or b""
            self._h2.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
            if len(stream.data) > RESPONSE_BODY_LIMIT:
                self._reset(event.stream_id)
                self._settle(stream, RpcStatus(StatusCode.RESOURCE_EXHAUSTED,
                                               f"the answer exceeds {RESPONSE_BODY_LIMIT} bytes"))
        elif isinstance(event, h2.events.StreamEnded):
            self._settle(stream, response_status(stream.http_status, stream.headers), bytes(stream.data))
        elif isinstance(event, h2.events.StreamReset):
            code = _RESET_STATUS.get(event.error_code, StatusCode.INTERNAL)  # type: ignore[call-overload]
            self._settle(stream, RpcStatus(code, f"stream reset by the collector ({event.error_code!r})"))

    async def call(self, headers: list[tuple[str, str]], message: bytes, send_timeout_s: float | None = None,
                   read_timeout_s: float | None = None) -> tuple[RpcStatus, bytes]:
        """One unary call: its status and, when OK, the response body (still framed).

        `send_timeout_s` bounds writing the request (flow control included), `read_timeout_s` the wait for the
        answer after it; None leaves a phase to the call's deadline."""
        if not self.usable:
            raise ConnectionUnusable("the connection to the collector is closed")
        stream_id = self._h2.get_next_available_stream_id()
        stream = _Stream(asyncio.get_running_loop().create_future())
        self._streams[stream_id] = stream
        try:
            async with phase_timeout(send_timeout_s, "send"):
                self._h2.send_headers(stream_id, headers)
                await self._send_body(stream_id, stream, memoryview(message))
            async with phase_timeout(read_timeout_s, "read"):
                return await stream.answered
        except BaseException:
            self._reset(stream_id)  # a cancelled call (its deadline passed) must not linger at the collector
            raise
        finally:
            self._streams.pop(stream_id, None)
            self._flush()

    async def _send_body(self, stream_id: int, stream: _Stream, body: memoryview) -> None:
        """DATA frames no larger than the peer's frame size and flow-control windows allow."""
        sent = 0
        while sent < len(body) and not stream.answered.done():
            window = min(self._h2.local_flow_control_window(stream_id), self._h2.max_outbound_frame_size,
                         len(body) - sent)
            if window <= 0:
                self._send_window.clear()
                self._flush()
                await self._send_window.wait()
                continue
            self._h2.send_data(stream_id, body[sent:sent + window].tobytes())
            sent += window
            self._flush()
        if not stream.answered.done():
            self._h2.end_stream(stream_id)
            self._flush()

    def _settle(self, stream: _Stream, status: RpcStatus, body: bytes = b"") -> None:
        if not stream.answered.done():
            stream.answered.set_result((status, body))
        self._send_window.set()  # a sender waiting for window on this stream must look again

    def _fail_streams(self, code: StatusCode, message: str) -> None:
        for stream in list(self._streams.values()):
            self._settle(stream, RpcStatus(code, message))

    def _reset(self, stream_id: int) -> None:
        with contextlib.suppress(h2.exceptions.H2Error):
            self._h2.reset_stream(stream_id, ErrorCodes.CANCEL)

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(h2.exceptions.H2Error):
                self._h2.close_connection()
            self._flush()
            self._transport.close()


def _text_headers(headers: Sequence[tuple[str | bytes, str | bytes]]) -> list[tuple[str, str]]:
    """h2 hands headers over as bytes; latin-1 cannot fail on a collector's odd bytes, and gRPC's own headers
    are ASCII (grpc-message is percent-encoded UTF-8, decoded later)."""
    return [(name if isinstance(name, str) else name.decode("latin-1"),
             value if isinstance(value, str) else value.decode("latin-1")) for name, value in headers]
