"""HTTP/2 test helpers: an h2c origin (prior knowledge, on the sans-IO `h2` library) and two clients.

`H2Client` is a well-behaved client on `h2` (flow control, SETTINGS ACKs, stream states kept for it);
`RawH2` writes frames as given and reads the server's frames one by one, for input `h2` would refuse to
send. Everything binds 127.0.0.1 port 0 and every wait has a time bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import struct
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    PingAckReceived,
    RemoteSettingsChanged,
    RequestReceived,
    ResponseReceived,
    SettingsAcknowledged,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings
from hpack import Decoder, Encoder
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
Headers = list[tuple[str, str]]
# What the origin and the clients offer for concurrency: far above the proxy's 100, so only the proxy limits.
PEER_MAX_CONCURRENT_STREAMS = 1000
# How long a `/together/N` stream waits for its N-1 siblings before it is answered anyway.
TOGETHER_TIMEOUT_S = 5.0


def _text(headers: Iterable[tuple[bytes | str, bytes | str]]) -> Headers:
    return [(name.decode() if isinstance(name, bytes) else name, value.decode() if isinstance(value, bytes) else value)
            for name, value in headers]


def header_value(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def frame_bytes(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """One frame exactly as given (RFC 9113 section 4.1), valid or not: 24-bit length, type, flags, stream id."""
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream_id) + payload


async def send_windowed(conn: H2Connection, writer: asyncio.StreamWriter, window_opened: asyncio.Event,
                        stream_id: int, body: bytes, end_stream: bool,
                        sent: Callable[[int], None] = lambda _size: None,
                        stopped: Callable[[], bool] = lambda: False) -> None:
    """Send `body` on a stream as the peer's windows allow, waiting on `window_opened` (set by the reader on
    WINDOW_UPDATE) when they are shut: the back-pressure under test. END_STREAM goes on the last DATA frame
    (an empty one for an empty body) when `end_stream`; `sent` hears of each piece, `stopped` ends it early."""
    offset = 0
    while offset < len(body) and not stopped():
        window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
        if window <= 0:
            window_opened.clear()
            await window_opened.wait()
            continue
        piece = body[offset:offset + window]
        offset += len(piece)
        conn.send_data(stream_id, piece, end_stream=end_stream and offset == len(body))
        sent(len(piece))
        writer.write(conn.data_to_send())
        await writer.drain()
    if end_stream and not body:
        conn.end_stream(stream_id)
        writer.write(conn.data_to_send())


async def settled(value: Callable[[], int], quiet_s: float = 0.5, timeout_s: float = 10.0) -> int:
    """`value()` once it stopped changing for `quiet_s` (or after `timeout_s`): what a back-pressured sender got out."""
    deadline = time.monotonic() + timeout_s
    last, since = value(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        await asyncio.sleep(0.05)
        if (current := value()) != last:
            last, since = current, time.monotonic()
    return last


async def eventually(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Whether `predicate` holds within `timeout_s` (polled: state may change on another thread's loop)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


# ------------------------------------------------------------------ the origin


@dataclass
class OriginStream:
    """One request as the origin saw it, and how far its response got."""

    connection: int  # the origin connection it came on, numbered from 1
    stream_id: int
    headers: Headers
    body: bytearray = field(default_factory=bytearray)
    trailers: Headers = field(default_factory=list)
    ended: bool = False  # the request's END_STREAM arrived
    reset_code: int | None = None  # the proxy reset it
    sent: int = 0  # response body bytes handed to the connection

    @property
    def path(self) -> str:
        return header_value(self.headers, ":path") or ""

    def count_sent(self, size: int) -> None:
        self.sent += size


@dataclass
class H2Origin:
    """An h2c-only origin (prior knowledge). Every request is answered once complete, by path:

    `/hang...` never; `/together/N/...` once N `/together/N/` streams are open on its connection (or after
    TOGETHER_TIMEOUT_S); `/size/N` a body of N bytes, sent as flow control allows; `/echo` the request body's
    length and sha256; `/reset...` RST_STREAM INTERNAL_ERROR instead of a response; `/reset-after-headers`
    headers and a bit of body, then RST_STREAM; `/goaway` a response then GOAWAY NO_ERROR and close;
    a gRPC-shaped request (content-type application/grpc) its body back with trailers `grpc-status: 0`;
    anything else 200 `ok:<path>`.
    """

    streams: list[OriginStream] = field(default_factory=list)
    connections: int = 0
    most_concurrent: int = 0  # the most streams open at once on one connection
    protocol_errors: list[str] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> H2Origin:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        return self

    async def __aenter__(self) -> H2Origin:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def with_path(self, prefix: str) -> list[OriginStream]:
        return [stream for stream in self.streams if stream.path.startswith(prefix)]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = _OriginConnection(self, self.connections, writer)
        try:
            await connection.run(reader)
        finally:
            connection.stop()
            writer.close()


class _OriginConnection:
    def __init__(self, origin: H2Origin, number: int, writer: asyncio.StreamWriter) -> None:
        self.origin = origin
        self.number = number
        self.writer = writer
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.conn.local_settings = Settings(
            client=False, initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: PEER_MAX_CONCURRENT_STREAMS})
        self.open: dict[int, OriginStream] = {}
        self.senders: set[asyncio.Task[None]] = set()
        self.window_opened = asyncio.Event()
        self.together_changed = asyncio.Event()

    async def run(self, reader: asyncio.StreamReader) -> None:
        self.conn.initiate_connection()
        self.flush()
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                try:
                    events = self.conn.receive_data(data)
                except ProtocolError as error:
                    self.origin.protocol_errors.append(repr(error))
                    self.flush()
                    return
                for event in events:
                    self.handle(event)
                self.flush()
                if self.writer.is_closing():
                    return

    def stop(self) -> None:
        for task in self.senders:
            task.cancel()

    def flush(self) -> None:
        if not self.writer.is_closing():
            self.writer.write(self.conn.data_to_send())

    def handle(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            stream = OriginStream(self.number, event.stream_id, _text(event.headers))
            self.origin.streams.append(stream)
            self.open[event.stream_id] = stream
            self.origin.most_concurrent = max(self.origin.most_concurrent, len(self.open))
            self.together_changed.set()
            if stream.path.startswith("/reset") and stream.path != "/reset-after-headers":
                self.conn.reset_stream(event.stream_id, ErrorCodes.INTERNAL_ERROR)
                self.open.pop(event.stream_id)
        elif isinstance(event, DataReceived) and event.stream_id in self.open:
            self.open[event.stream_id].body += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, TrailersReceived) and event.stream_id in self.open:
            self.open[event.stream_id].trailers = _text(event.headers)
        elif isinstance(event, StreamEnded) and event.stream_id in self.open:
            self.open[event.stream_id].ended = True
            self._spawn(self.answer(self.open[event.stream_id]))
        elif isinstance(event, StreamReset) and event.stream_id in self.open:
            self.open.pop(event.stream_id).reset_code = int(event.error_code)
        elif isinstance(event, WindowUpdated | RemoteSettingsChanged):  # INITIAL_WINDOW_SIZE may change too
            self.window_opened.set()

    def _spawn(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.senders.add(task)
        task.add_done_callback(self.senders.discard)

    async def answer(self, stream: OriginStream) -> None:
        with contextlib.suppress(StreamClosedError):  # the proxy reset the stream meanwhile
            await self._answer(stream)

    async def _answer(self, stream: OriginStream) -> None:
        path, sid = stream.path, stream.stream_id
        if path.startswith("/hang"):
            return
        if path.startswith("/together/"):
            await self._gather(int(path.split("/")[2]))
        if (header_value(stream.headers, "content-type") or "").startswith("application/grpc"):
            self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
            await self.send_body(stream, bytes(stream.body), end_stream=False)
            self.conn.send_headers(sid, [("grpc-status", "0"), ("grpc-message", "")], end_stream=True)
        elif path.startswith("/size/"):
            size = int(path.split("/")[2])
            self.conn.send_headers(sid, [(":status", "200"), ("content-length", str(size))])
            await self.send_body(stream, b"z" * size)
        elif path == "/reset-after-headers":
            self.conn.send_headers(sid, [(":status", "200")])
            await self.send_body(stream, b"partial", end_stream=False)
            self.conn.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
        else:
            body = (b"%d %s" % (len(stream.body), hashlib.sha256(stream.body).hexdigest().encode())
                    if path == "/echo" else b"ok:" + path.encode())
            self.conn.send_headers(sid, [(":status", "200"), ("content-length", str(len(body)))])
            await self.send_body(stream, body)
        self.open.pop(sid, None)
        self.flush()
        if path == "/goaway":
            self.conn.close_connection(ErrorCodes.NO_ERROR)
            self.flush()
            self.writer.close()

    async def _gather(self, count: int) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TOGETHER_TIMEOUT_S):
                while sum(1 for s in self.open.values() if s.path.startswith(f"/together/{count}/")) < count:
                    self.together_changed.clear()
                    await self.together_changed.wait()

    async def send_body(self, stream: OriginStream, body: bytes, end_stream: bool = True) -> None:
        await send_windowed(self.conn, self.writer, self.window_opened, stream.stream_id, body, end_stream,
                            sent=stream.count_sent, stopped=lambda: stream.reset_code is not None)


# ------------------------------------------------------------------ a well-behaved client


@dataclass
class H2Response:
    stream_id: int
    headers: Headers = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: Headers = field(default_factory=list)
    ended: bool = False  # END_STREAM arrived
    reset_code: int | None = None  # RST_STREAM arrived
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def status(self) -> int | None:
        value = header_value(self.headers, ":status")
        return None if value is None else int(value)


class H2Client:
    """A client connection on `h2` with prior knowledge: it ACKs SETTINGS, keeps windows, and (with
    `auto_ack`) hands DATA back to flow control as soon as it arrives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: H2Connection,
                 auto_ack: bool) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = conn
        self.auto_ack = auto_ack
        self.responses: dict[int, H2Response] = {}
        self.server_settings: dict[int, int] = {}
        self.server_settings_seen = asyncio.Event()
        self.settings_acked = asyncio.Event()
        self.ping_acks: list[bytes] = []
        self.goaway: ConnectionTerminated | None = None
        self.protocol_error: str | None = None
        self.closed = asyncio.Event()
        self.window_opened = asyncio.Event()
        self._reading = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, port: int, settings: dict[int, int] | None = None, auto_ack: bool = True) -> H2Client:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.local_settings = Settings(client=True, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: PEER_MAX_CONCURRENT_STREAMS,
            **{SettingCodes(code): value for code, value in (settings or {}).items()}})
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        return cls(reader, writer, conn, auto_ack)

    async def __aenter__(self) -> H2Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.abort()

    def abort(self) -> None:
        self._reading.cancel()
        self.writer.transport.abort()

    def flush(self) -> None:
        if not self.writer.is_closing():
            self.writer.write(self.conn.data_to_send())

    async def wait_server_settings(self, timeout_s: float = 5.0) -> dict[int, int]:
        await asyncio.wait_for(self.server_settings_seen.wait(), timeout_s)
        return self.server_settings

    def start(self, path: str, method: str = "GET", headers: Sequence[tuple[str, str]] = (),
              end_stream: bool = True, authority: str = "reviews:9080") -> int:
        """Send a request's HEADERS on a new stream; its id."""
        stream_id = self.conn.get_next_available_stream_id()
        self.responses[stream_id] = H2Response(stream_id)
        self.conn.send_headers(stream_id, [(":method", method), (":scheme", "http"), (":authority", authority),
                                           (":path", path), *headers], end_stream=end_stream)
        self.flush()
        return stream_id

    async def send_body(self, stream_id: int, body: bytes, end_stream: bool = True,
                        trailers: Sequence[tuple[str, str]] = (), timeout_s: float = 10.0) -> None:
        """Send `body` as the server's windows allow, then END_STREAM (on trailers when given)."""
        async with asyncio.timeout(timeout_s):
            await send_windowed(self.conn, self.writer, self.window_opened, stream_id, body,
                                end_stream and not trailers)
        if trailers:
            self.conn.send_headers(stream_id, list(trailers), end_stream=True)
            self.flush()

    async def request(self, path: str, method: str = "GET", headers: Sequence[tuple[str, str]] = (),
                      body: bytes = b"", trailers: Sequence[tuple[str, str]] = (),
                      timeout_s: float = 10.0) -> H2Response:
        stream_id = self.start(path, method, headers, end_stream=not body and not trailers)
        if body or trailers:
            await self.send_body(stream_id, body, trailers=trailers, timeout_s=timeout_s)
        return await self.response(stream_id, timeout_s)

    async def response(self, stream_id: int, timeout_s: float = 10.0) -> H2Response:
        """The stream's response once it ended, was reset or the connection went away."""
        response = self.responses[stream_id]
        await asyncio.wait_for(response.done.wait(), timeout_s)
        return response

    def reset(self, stream_id: int, code: int = ErrorCodes.CANCEL) -> None:
        self.conn.reset_stream(stream_id, code)
        self.flush()

    async def ping(self, opaque: bytes, timeout_s: float = 5.0) -> bool:
        self.conn.ping(opaque)
        self.flush()
        return await eventually(lambda: opaque in self.ping_acks, timeout_s)

    async def wait_closed(self, timeout_s: float = 5.0) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), timeout_s)
        return self.closed.is_set()

    async def _read(self) -> None:
        try:
            while data := await self.reader.read(65536):
                try:
                    events = self.conn.receive_data(data)
                except ProtocolError as error:
                    self.protocol_error = repr(error)
                    break
                for event in events:
                    self._handle(event)
                self.flush()
        except ConnectionError:
            pass
        finally:
            self.closed.set()
            for response in self.responses.values():
                response.done.set()

    def _handle(self, event: Event) -> None:
        stream_id = getattr(event, "stream_id", None)
        response = self.responses.get(stream_id) if isinstance(stream_id, int) else None
        if isinstance(event, RemoteSettingsChanged):
            self.server_settings.update({int(code): change.new_value
                                         for code, change in event.changed_settings.items()})
            self.server_settings_seen.set()
        elif isinstance(event, SettingsAcknowledged):
            self.settings_acked.set()
        elif isinstance(event, PingAckReceived):
            self.ping_acks.append(event.ping_data)
        elif isinstance(event, WindowUpdated):
            self.window_opened.set()
        elif isinstance(event, ConnectionTerminated):
            self.goaway = event
            for pending in self.responses.values():
                pending.done.set()
        elif response is None:
            return
        elif isinstance(event, ResponseReceived):
            response.headers = _text(event.headers)
        elif isinstance(event, DataReceived):
            response.body += event.data
            if self.auto_ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, response.stream_id)
        elif isinstance(event, TrailersReceived):
            response.trailers = _text(event.headers)
        elif isinstance(event, StreamEnded):
            response.ended = True
            response.done.set()
        elif isinstance(event, StreamReset):
            response.reset_code = int(event.error_code)
            response.done.set()


# ------------------------------------------------------------------ a raw frame client


class RawH2:
    """Frames out exactly as given; the server's frames in one at a time (its SETTINGS ACKed, as a client must)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.received: list[Frame] = []
        self._decoded: dict[int, Headers] = {}
        self.closed = False
        self.finished = False

    @classmethod
    async def connect(cls, port: int, settings: dict[int, int] | None = None,
                      receive_buffer: int | None = None) -> RawH2:
        """The preface and a SETTINGS frame (`settings`, possibly none) sent. `receive_buffer` shrinks the
        socket's SO_RCVBUF before connecting, so a client that does not read backs the server up quickly."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), 5)
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock)
        raw = cls(reader, writer)
        raw.send_bytes(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())
        return raw

    async def __aenter__(self) -> RawH2:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.abort()

    def abort(self) -> None:
        self.writer.transport.abort()

    def send_bytes(self, data: bytes) -> None:
        if not self.writer.is_closing() and not self.finished:
            self.writer.write(data)

    def finish(self) -> None:
        """Half-close: the client sends nothing more (SETTINGS ACKs included)."""
        self.finished = True
        self.writer.write_eof()

    def send(self, *frames: Frame) -> None:
        self.send_bytes(b"".join(frame.serialize() for frame in frames))

    async def drain(self, timeout_s: float = 5.0) -> bool:
        """Whether everything written was taken by the kernel within `timeout_s` (False: the peer stopped reading)."""
        try:
            await asyncio.wait_for(self.writer.drain(), timeout_s)
        except TimeoutError:
            return False
        except ConnectionError:
            self.closed = True
        return True

    def block(self, headers: Sequence[tuple[str, str]]) -> bytes:
        """A header block encoded with this connection's HPACK context (so later blocks may index into it)."""
        return bytes(self.encoder.encode(list(headers)))

    def request_headers(self, stream_id: int, path: str, extra: Sequence[tuple[str, str]] = (),
                        end_stream: bool = True) -> HeadersFrame:
        flags = ["END_HEADERS", "END_STREAM"] if end_stream else ["END_HEADERS"]
        return HeadersFrame(stream_id, self.block(
            [(":method", "GET"), (":scheme", "http"), (":authority", "reviews:9080"), (":path", path), *extra]),
            flags=flags)

    def headers_of(self, frame: HeadersFrame) -> Headers:
        """The decoded header list of a HEADERS frame this connection received."""
        return self._decoded[id(frame)]

    async def next_frame(self, timeout_s: float = 5.0) -> Frame | None:
        """The server's next frame; None when the connection closed (then `closed`) or nothing came in time."""
        try:
            async with asyncio.timeout(timeout_s):
                frame, length = Frame.parse_frame_header(memoryview(await self.reader.readexactly(9)))
                frame.parse_body(memoryview(await self.reader.readexactly(length)))
        except TimeoutError:
            return None
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed = True
            return None
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            self.send(SettingsFrame(0, flags=["ACK"]))
        if isinstance(frame, HeadersFrame):  # every block, in order, or the HPACK context goes out of step
            self._decoded[id(frame)] = _text(self.decoder.decode(frame.data))
        self.received.append(frame)  # which also keeps the ids in `_decoded` unique
        return frame

    async def until(self, wanted: Callable[[Frame], bool], timeout_s: float = 5.0) -> Frame | None:
        """The first frame from the server that is `wanted`, None if the connection closed or time ran out."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            frame = await self.next_frame(left)
            if frame is None:
                return None
            if wanted(frame):
                return frame
        return None

    async def responses(self, stream_ids: Sequence[int], timeout_s: float = 5.0) -> dict[int, H2Response]:
        """The streams' responses as far as they got: each until END_STREAM or RST_STREAM, all until GOAWAY,
        close or `timeout_s`."""
        responses = {stream_id: H2Response(stream_id) for stream_id in stream_ids}
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0 and not all(r.done.is_set() for r in responses.values()):
            frame = await self.next_frame(left)
            if frame is None or isinstance(frame, GoAwayFrame):
                break
            response = responses.get(frame.stream_id)
            if response is None:
                continue
            if isinstance(frame, HeadersFrame):
                if response.headers:
                    response.trailers = self.headers_of(frame)
                else:
                    response.headers = self.headers_of(frame)
            elif isinstance(frame, DataFrame):
                response.body += frame.data
            elif isinstance(frame, RstStreamFrame):
                response.reset_code = frame.error_code
                response.done.set()
            if "END_STREAM" in frame.flags:
                response.ended = True
                response.done.set()
        return responses

    async def response(self, stream_id: int, timeout_s: float = 5.0) -> H2Response:
        return (await self.responses([stream_id], timeout_s))[stream_id]

    async def goaway(self, timeout_s: float = 5.0) -> GoAwayFrame | None:
        frame = await self.until(lambda f: isinstance(f, GoAwayFrame), timeout_s)
        return frame if isinstance(frame, GoAwayFrame) else None

    async def wait_closed(self, timeout_s: float = 5.0) -> bool:
        """Read (and keep) frames until the server closes; whether it did within `timeout_s`."""
        await self.until(lambda _: False, timeout_s)
        return self.closed
