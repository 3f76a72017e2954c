"""Zipkin v1 Thrift (TBinaryProtocol; a list of spans, as `POST /api/v1/spans` takes `application/x-thrift`).

Read as openzipkin/zipkin's ThriftCodec.readList, V1ThriftSpanReader and ThriftEndpointCodec read it
(zipkin/src/main/java/zipkin2/internal/, Apache-2.0): the list header's element type is ignored;
unknown fields are skipped; an annotation without a timestamp or value is dropped; a binary
annotation of type STRING (6) is a tag, one of type BOOL (0) with value "\\x01", an endpoint and key
ca/sa/ma is an address, any other is dropped; an IPv4 of 0 means none. Then zipkin_v1.convert.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable

from tracemesh_collector.zipkin_v1 import (
    V1Annotation,
    V1BinaryAnnotation,
    V1Span,
    convert_spans,
    empty_endpoint_as_none,
)
from tracemesh_sidecar.spans.errors import SpanDecodeError
from tracemesh_sidecar.spans.ids import normalize_trace_id
from tracemesh_sidecar.spans.model import Endpoint, Span

STOP, BOOL, BYTE, DOUBLE, I16, I32, I64, STRING, STRUCT, MAP, SET, LIST = 0, 2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15
_FIXED_SIZES = {BOOL: 1, BYTE: 1, DOUBLE: 8, I16: 2, I32: 4, I64: 8}
_MAX_SKIP_DEPTH = 64  # Zipkin allows any depth; a bound keeps a hostile body from exhausting the stack


class _Reader:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.offset = 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.offset + size > len(self.body):
            raise SpanDecodeError("body", f"is truncated Thrift: needs {size} bytes at offset {self.offset}")
        chunk = self.body[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        value: int = struct.unpack(fmt, self.take(size))[0]
        return value

    def field(self) -> tuple[int, int]:
        """(type, id) of the next field; type STOP ends a struct."""
        kind = self.unpack(">b")
        return (STOP, 0) if kind == STOP else (kind, self.unpack(">h"))

    def text(self) -> str:
        raw = self.take(self.unpack(">i"))
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise SpanDecodeError("body", f"has a Thrift string that is not UTF-8 before {self.offset}") from None

    def skip(self, kind: int, depth: int = _MAX_SKIP_DEPTH) -> None:
        if depth <= 0:
            raise SpanDecodeError("body", "nests Thrift structures too deeply")
        if kind in _FIXED_SIZES:
            self.take(_FIXED_SIZES[kind])
        elif kind == STRING:
            self.take(self.unpack(">i"))
        elif kind == STRUCT:
            while (inner := self.field()[0]) != STOP:
                self.skip(inner, depth - 1)
        elif kind == MAP:
            key_kind, value_kind, count = self.unpack(">b"), self.unpack(">b"), self.unpack(">i")
            for _ in range(count):
                self.skip(key_kind, depth - 1)
                self.skip(value_kind, depth - 1)
        elif kind in (SET, LIST):
            element_kind, count = self.unpack(">b"), self.unpack(">i")
            for _ in range(count):
                self.skip(element_kind, depth - 1)
        else:
            raise SpanDecodeError("body", f"has an unknown Thrift type {kind} at offset {self.offset}")

    def struct(self, readers: dict[tuple[int, int], Callable[[], None]]) -> None:
        while (header := self.field())[0] != STOP:
            reader = readers.get(header)
            if reader is None:
                self.skip(header[0])
            else:
                reader()


def decode_spans(body: bytes) -> list[Span]:
    """v2 spans from a Thrift list of v1 spans; raises SpanDecodeError saying where the body is wrong."""
    if not body:
        return []
    reader = _Reader(body)
    reader.unpack(">b")  # the element type, ignored as Zipkin ignores it
    count = reader.unpack(">i")
    if count < 0 or count > len(body):
        raise SpanDecodeError("body", f"is not a Thrift list of spans (it claims {count} elements)")
    return convert_spans([_span(reader) for _ in range(count)])


def _span(reader: _Reader) -> V1Span:
    fields: dict[str, object] = {}
    annotations: list[V1Annotation] = []
    binary_annotations: list[V1BinaryAnnotation] = []

    def each(read_one: Callable[[], None]) -> Callable[[], None]:
        def read_list() -> None:
            reader.unpack(">b")
            for _ in range(reader.unpack(">i")):
                read_one()
        return read_list

    reader.struct({
        (I64, 1): lambda: fields.__setitem__("trace_id", reader.unpack(">Q")),
        (I64, 12): lambda: fields.__setitem__("trace_id_high", reader.unpack(">Q")),
        (STRING, 3): lambda: fields.__setitem__("name", reader.text()),
        (I64, 4): lambda: fields.__setitem__("id", reader.unpack(">Q")),
        (I64, 5): lambda: fields.__setitem__("parent_id", reader.unpack(">Q")),
        (LIST, 6): each(lambda: _annotation(reader, annotations)),
        (LIST, 8): each(lambda: _binary_annotation(reader, binary_annotations)),
        (BOOL, 9): lambda: fields.__setitem__("debug", reader.unpack(">b") == 1),
        (I64, 10): lambda: fields.__setitem__("timestamp", reader.unpack(">q")),
        (I64, 11): lambda: fields.__setitem__("duration", reader.unpack(">q")),
    })
    trace_id, high, span_id = fields.get("trace_id", 0), fields.get("trace_id_high", 0), fields.get("id", 0)
    assert isinstance(trace_id, int) and isinstance(high, int) and isinstance(span_id, int)
    if not trace_id and not high:
        raise SpanDecodeError("span.trace_id", "is required and must not be zero")
    if not span_id:
        raise SpanDecodeError("span.id", "is required and must not be zero")
    parent_id = fields.get("parent_id", 0)
    name, debug = fields.get("name", ""), fields.get("debug", False)
    timestamp, duration = fields.get("timestamp", 0), fields.get("duration", 0)
    assert isinstance(parent_id, int) and isinstance(name, str) and isinstance(debug, bool)
    assert isinstance(timestamp, int) and isinstance(duration, int)
    return V1Span(trace_id=normalize_trace_id(f"{high:016x}{trace_id:016x}"), id=f"{span_id:016x}", name=name,
                  parent_id=f"{parent_id:016x}" if parent_id else None, timestamp=max(timestamp, 0),
                  duration=max(duration, 0), annotations=annotations, binary_annotations=binary_annotations,
                  debug=debug)


def _annotation(reader: _Reader, out: list[V1Annotation]) -> None:
    found: dict[str, object] = {}
    reader.struct({
        (I64, 1): lambda: found.__setitem__("timestamp", reader.unpack(">q")),
        (STRING, 2): lambda: found.__setitem__("value", reader.text()),
        (STRUCT, 3): lambda: found.__setitem__("endpoint", _endpoint(reader)),
    })
    timestamp, value, endpoint = found.get("timestamp", 0), found.get("value"), found.get("endpoint")
    if isinstance(timestamp, int) and timestamp and isinstance(value, str):
        out.append(V1Annotation(timestamp, value, endpoint if isinstance(endpoint, Endpoint) else None))


def _binary_annotation(reader: _Reader, out: list[V1BinaryAnnotation]) -> None:
    found: dict[str, object] = {}
    reader.struct({
        (STRING, 1): lambda: found.__setitem__("key", reader.text()),
        (STRING, 2): lambda: found.__setitem__("value", reader.take(reader.unpack(">i"))),
        (I32, 3): lambda: found.__setitem__("type", reader.unpack(">i")),
        (STRUCT, 4): lambda: found.__setitem__("endpoint", _endpoint(reader)),
    })
    key, value, kind = found.get("key"), found.get("value"), found.get("type")
    endpoint = found.get("endpoint")
    endpoint = endpoint if isinstance(endpoint, Endpoint) else None
    if not isinstance(key, str) or not isinstance(value, bytes):
        return
    if kind == 6:  # STRING
        try:
            out.append(V1BinaryAnnotation(key, value.decode(), endpoint))
        except UnicodeDecodeError:
            raise SpanDecodeError(f"binaryAnnotation {key!r}", "has a STRING value that is not UTF-8") from None
    elif kind == 0 and value == b"\x01" and endpoint is not None and key in ("ca", "sa", "ma"):
        out.append(V1BinaryAnnotation(key, None, endpoint))


def _endpoint(reader: _Reader) -> Endpoint | None:
    endpoint = Endpoint()

    def ipv4() -> None:
        address = reader.unpack(">I")
        if address:
            endpoint.ipv4 = str(ipaddress.IPv4Address(address))

    def ipv6() -> None:
        raw = reader.take(reader.unpack(">i"))
        if len(raw) == 16:
            endpoint.ipv6 = str(ipaddress.IPv6Address(raw))

    def port() -> None:
        endpoint.port = (reader.unpack(">H")) or None

    def service_name() -> None:
        endpoint.service_name = reader.text() or None

    reader.struct({(I32, 1): ipv4, (I16, 2): port, (STRING, 3): service_name, (STRING, 4): ipv6})
    return empty_endpoint_as_none(endpoint)
