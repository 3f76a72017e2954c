"""An OTLP span's attributes read from its serialized bytes, not through protobuf's per-field objects.

protobuf's Python messages (upb) build an object for every field read: a span's ~20 KeyValues read
through them (key, value, WhichOneof, the value itself) are most of what decoding an OTLP span costs.
So otlp.py parses the request with protobuf as before (which checks it: lengths, UTF-8, field types),
serializes each span back in one C call, and reads its attributes (field 9) here. The bytes are
protobuf's own output, well formed; a value this reader leaves alone (an array or a map, which
become JSON text, or a group) makes it answer None, and the span's attributes are read through the
accessors. Written by hand because, compiled by mypyc with the rest of the package, it takes a
fraction of the accessors' time (`python -m bench.collector`, tests/spans/test_otlp_wire.py).
"""

from __future__ import annotations

import struct
from typing import Final

from tracemesh_sidecar.spans.model import AttributeValue

# Each its own Final: mypyc makes a Final int a native constant, where a module name is a dict lookup at each use
# (callgrind: ~22k instructions of an 18-attribute OTLP span's decode, a sixth of it).
_VARINT: Final = 0
_FIXED64: Final = 1
_LENGTH: Final = 2
_FIXED32: Final = 5
_SPAN_ATTRIBUTES: Final = 9  # opentelemetry.proto.trace.v1.Span.attributes: repeated KeyValue
_KEY: Final = 1  # KeyValue
_VALUE: Final = 2
# AnyValue's scalar members (5 and 6: array, map)
_STRING: Final = 1
_BOOL: Final = 2
_INT: Final = 3
_DOUBLE: Final = 4
_BYTES: Final = 7
_DOUBLE_FORMAT: Final = struct.Struct("<d")


class _NotScalar(Exception):
    """An array or map value, or a wire type this reader does not skip."""


def span_attributes(span: bytes) -> dict[str, AttributeValue] | None:
    """The typed attributes of a serialized Span, in order; None when one is not a scalar."""
    attributes: dict[str, AttributeValue] = {}
    try:
        position, end = 0, len(span)
        while position < end:
            tag, position = _varint(span, position)
            if tag == (_SPAN_ATTRIBUTES << 3) | _LENGTH:
                length, position = _varint(span, position)
                key, value = _key_value(span, position, position + length)
                attributes[key] = value
                position += length
            else:
                position = _skip(span, position, tag & 7)
    except _NotScalar:
        return None
    return attributes


def _key_value(data: bytes, position: int, end: int) -> tuple[str, AttributeValue]:
    key = ""
    value: AttributeValue = ""  # a KeyValue without a value, as AnyValue with none set
    while position < end:
        tag, position = _varint(data, position)
        if tag == (_KEY << 3) | _LENGTH:
            length, position = _varint(data, position)
            key = data[position:position + length].decode()
            position += length
        elif tag == (_VALUE << 3) | _LENGTH:
            length, position = _varint(data, position)
            value = _any_value(data, position, position + length)
            position += length
        else:
            position = _skip(data, position, tag & 7)
    return key, value


def _any_value(data: bytes, position: int, end: int) -> AttributeValue:
    value: AttributeValue = ""
    while position < end:
        tag, position = _varint(data, position)
        field, wire = tag >> 3, tag & 7
        if field == _STRING and wire == _LENGTH:
            length, position = _varint(data, position)
            value = data[position:position + length].decode()
            position += length
        elif field == _BYTES and wire == _LENGTH:
            length, position = _varint(data, position)
            value = data[position:position + length]
            position += length
        elif field == _BOOL and wire == _VARINT:
            number, position = _varint(data, position)
            value = number != 0
        elif field == _INT and wire == _VARINT:
            number, position = _varint(data, position)
            value = number - (1 << 64) if number >= 1 << 63 else number  # int64, two's complement
        elif field == _DOUBLE and wire == _FIXED64:
            value = _DOUBLE_FORMAT.unpack_from(data, position)[0]
            position += 8
        elif field in (5, 6):
            raise _NotScalar
        else:
            position = _skip(data, position, wire)
    return value


def _skip(data: bytes, position: int, wire: int) -> int:
    if wire == _VARINT:
        return _varint(data, position)[1]
    if wire == _FIXED64:
        return position + 8
    if wire == _FIXED32:
        return position + 4
    if wire == _LENGTH:
        length, position = _varint(data, position)
        return position + length
    raise _NotScalar


def _varint(data: bytes, position: int) -> tuple[int, int]:
    byte = data[position]
    if byte < 0x80:
        return byte, position + 1
    result, shift = byte & 0x7F, 7
    while True:
        position += 1
        byte = data[position]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position + 1
        shift += 7
