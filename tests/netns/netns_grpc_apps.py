"""gRPC and h2c applications for netns pods, knowing nothing of the mesh.

    python netns_grpc_apps.py greeter PORT
        grpc/grpc's helloworld `Greeter` (examples/protos/helloworld.proto): unary `SayHello` and
        server-streaming `SayHelloStreamReply` (STREAM_REPLIES replies). A name `status:<CODE>` (a
        grpc.StatusCode name) is refused with that status. Every call's trailing metadata carries
        the trace headers the server saw, as `seen-<header>`.
    python netns_grpc_apps.py greet TARGET NAME [CODE...]
        a grpcio client on one channel to TARGET (`<service>:<port>`): SayHello(NAME),
        SayHelloStreamReply(NAME), then SayHello(`status:<CODE>`) for each CODE; prints a JSON list,
        one {"method", "name", "code", "details", "replies", "seen"} per call.
    python netns_grpc_apps.py h2c PORT
        an HTTP server speaking h2c with prior knowledge, HTTP/1.1 `Upgrade: h2c` and plain
        HTTP/1.1; answers every request 200 with {"protocol", "path", "headers"}, protocol being
        "HTTP/2", "HTTP/1.1 Upgrade: h2c" (the upgraded request) or "HTTP/1.1".

Messages are encoded by hand (helloworld's HelloRequest and HelloReply are both one string,
field 1) and served through grpcio's generic handlers: no generated stubs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events

SERVICE = "helloworld.Greeter"
SAY_HELLO = f"/{SERVICE}/SayHello"
SAY_HELLO_STREAM_REPLY = f"/{SERVICE}/SayHelloStreamReply"
STREAM_REPLIES = 5
REFUSE_PREFIX = "status:"
TRACE_HEADERS = ("x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "traceparent")
SEEN_PREFIX = "seen-"
CALL_TIMEOUT_S = 20.0


def encode_string(value: str) -> bytes:
    """A message whose field 1 is the string `value` (tag 1, wire type 2: length-delimited)."""
    data = value.encode()
    length = bytearray()
    size = len(data)
    while True:
        byte, size = size & 0x7F, size >> 7
        length.append(byte | (0x80 if size else 0))
        if not size:
            return b"\x0a" + bytes(length) + data


def decode_string(message: bytes) -> str:
    """Field 1 of a message of one string field; proto3 leaves an empty string out, so b"" is ""."""
    if not message:
        return ""
    if message[0] != 0x0A:
        raise ValueError(f"expected field 1 (length-delimited) first, got tag byte {message[0]:#x}")
    size, shift, index = 0, 0, 1
    while True:
        byte = message[index]
        size |= (byte & 0x7F) << shift
        index, shift = index + 1, shift + 7
        if not byte & 0x80:
            return message[index:index + size].decode()


def reply_texts(name: str) -> list[str]:
    """What SayHelloStreamReply(name) sends, one reply each."""
    return [f"Hello {name}, reply {number} of {STREAM_REPLIES}" for number in range(1, STREAM_REPLIES + 1)]


def _greet(name: str, context: grpc.ServicerContext) -> None:
    """The trace headers seen into the trailers; a refused name aborts with its status."""
    seen = {key: value for key, value in context.invocation_metadata() if key in TRACE_HEADERS}
    context.set_trailing_metadata(tuple((SEEN_PREFIX + key, str(value)) for key, value in seen.items()))
    if name.startswith(REFUSE_PREFIX):
        code = grpc.StatusCode[name.removeprefix(REFUSE_PREFIX)]
        context.abort(code, f"no greeting for {name}")


def say_hello(name: str, context: grpc.ServicerContext) -> str:
    _greet(name, context)
    return f"Hello {name}"


def say_hello_stream_reply(name: str, context: grpc.ServicerContext) -> Iterator[str]:
    _greet(name, context)
    yield from reply_texts(name)


def serve_greeter(port: int) -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    handlers = {
        "SayHello": grpc.unary_unary_rpc_method_handler(
            say_hello, request_deserializer=decode_string, response_serializer=encode_string),
        "SayHelloStreamReply": grpc.unary_stream_rpc_method_handler(
            say_hello_stream_reply, request_deserializer=decode_string, response_serializer=encode_string),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"0.0.0.0:{port}")
    server.start()
    server.wait_for_termination()


def _outcome(method: str, name: str, call: grpc.Call, replies: list[str]) -> dict[str, Any]:
    trailers = call.trailing_metadata() or ()
    return {"method": method, "name": name, "code": call.code().name, "details": call.details(), "replies": replies,
            "seen": {key.removeprefix(SEEN_PREFIX): value for key, value in trailers if key.startswith(SEEN_PREFIX)}}


def greet(target: str, name: str, refusals: Sequence[str]) -> list[dict[str, Any]]:
    outcomes = []
    # No proxy from the environment: the pod's own sidecar captures the connection.
    with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as channel:
        unary = channel.unary_unary(SAY_HELLO, request_serializer=encode_string, response_deserializer=decode_string)
        streaming = channel.unary_stream(SAY_HELLO_STREAM_REPLY, request_serializer=encode_string,
                                         response_deserializer=decode_string)
        for called in [name, *(REFUSE_PREFIX + code for code in refusals)]:
            try:
                reply, call = unary.with_call(called, timeout=CALL_TIMEOUT_S)
                outcomes.append(_outcome("SayHello", called, call, [reply]))
            except grpc.RpcError as error:
                assert isinstance(error, grpc.Call)  # a failed call is its own outcome
                outcomes.append(_outcome("SayHello", called, error, []))
            if called == name:
                replies: list[str] = []
                stream = streaming(name, timeout=CALL_TIMEOUT_S)
                # On a failure the code and details say what went wrong; the replies say how far it got.
                with contextlib.suppress(grpc.RpcError):
                    replies.extend(stream)
                outcomes.append(_outcome("SayHelloStreamReply", name, stream, replies))
    return outcomes


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class H2cApp(asyncio.Protocol):
    """One connection: the first bytes say which of the three ways the client speaks."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.h2: h2.connection.H2Connection | None = None
        self.buffer = b""
        self.requests: dict[int, tuple[str, dict[str, str]]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.h2 is not None:
            self._receive_h2(data)
            return
        self.buffer += data
        if len(self.buffer) < len(PREFACE) and PREFACE.startswith(self.buffer):
            return  # maybe the preface, not yet all of it
        if self.buffer.startswith(PREFACE):
            self._start_h2()
            self.h2_connection.initiate_connection()
            self._receive_h2(self.buffer)
            return
        head, complete, rest = self.buffer.partition(b"\r\n\r\n")
        if not complete:
            return
        request_line, *lines = head.decode("latin-1").split("\r\n")
        path = request_line.split()[1]
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        if headers.get("upgrade", "").lower() == "h2c" and "http2-settings" in headers:
            self._upgrade(path, headers, rest)
        else:
            body = self._answer_body("HTTP/1.1", path, headers)
            self._transport().write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                    + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            self._transport().close()

    def _upgrade(self, path: str, headers: dict[str, str], rest: bytes) -> None:
        """RFC 7540 section 3.2: 101, then the server's preface; the request is stream 1, answered over HTTP/2."""
        self._transport().write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        self._start_h2()
        self.h2_connection.initiate_upgrade_connection(headers["http2-settings"].encode())
        self._respond(1, self._answer_body("HTTP/1.1 Upgrade: h2c", path, headers))
        self._receive_h2(rest)

    def _start_h2(self) -> None:
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))

    @property
    def h2_connection(self) -> h2.connection.H2Connection:
        assert self.h2 is not None
        return self.h2

    def _transport(self) -> asyncio.Transport:
        assert self.transport is not None
        return self.transport

    def _receive_h2(self, data: bytes) -> None:
        connection = self.h2_connection
        for event in connection.receive_data(data):
            if isinstance(event, h2.events.RequestReceived) and event.stream_id is not None:
                headers = {str(name): str(value) for name, value in event.headers or ()}
                self.requests[event.stream_id] = (headers.get(":path", ""), headers)
            elif isinstance(event, h2.events.DataReceived) and event.stream_id is not None:
                connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id in self.requests:
                path, headers = self.requests.pop(event.stream_id)
                self._respond(event.stream_id, self._answer_body("HTTP/2", path, headers))
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._transport().write(connection.data_to_send())
                self._transport().close()
                return
        self._transport().write(connection.data_to_send())

    def _respond(self, stream_id: int, body: bytes) -> None:
        self.h2_connection.send_headers(stream_id, [(":status", "200"), ("content-type", "application/json"),
                                                    ("content-length", str(len(body)))])
        self.h2_connection.send_data(stream_id, body, end_stream=True)
        self._transport().write(self.h2_connection.data_to_send())

    @staticmethod
    def _answer_body(protocol: str, path: str, headers: dict[str, str]) -> bytes:
        return json.dumps({"protocol": protocol, "path": path, "headers": headers}).encode()


async def serve_h2c(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(H2cApp, "0.0.0.0", port)
    await server.serve_forever()


def main(argv: list[str]) -> None:
    if argv[0] == "greeter":
        serve_greeter(int(argv[1]))
    elif argv[0] == "greet":
        print(json.dumps(greet(argv[1], argv[2], argv[3:])))
    elif argv[0] == "h2c":
        asyncio.run(serve_h2c(int(argv[1])))
    else:
        raise SystemExit(f"unknown command {argv[0]!r}: greeter PORT | greet TARGET NAME [CODE...] | h2c PORT")


if __name__ == "__main__":
    main(sys.argv[1:])
