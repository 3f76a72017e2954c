"""Zipkin proto3 (`zipkin.proto3.ListOfSpans`, `POST /api/v2/spans` as application/x-protobuf).

The message types are described here in code and turned into classes by protobuf's message
factory, rather than generated from a copy of zipkin.proto: the repository then holds neither
a vendored spec file nor generated code tied to one protoc/protobuf version, and the wire format
(field numbers and types, which Zipkin keeps stable) is stated in one reviewable place. Tests
check it byte for byte against classes compiled from the official zipkin.proto.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from tracemesh_sidecar.spans.errors import SpanDecodeError
from tracemesh_sidecar.spans.ids import id_from_bytes, normalize_trace_id
from tracemesh_sidecar.spans.model import Annotation, Endpoint, Span, SpanKind

_FIELD: Final = descriptor_pb2.FieldDescriptorProto
_OPTIONAL: Final = _FIELD.LABEL_OPTIONAL
_REPEATED: Final = _FIELD.LABEL_REPEATED
_PACKAGE: Final = "zipkin.proto3"
# Span.Kind numbers; 0 (SPAN_KIND_UNSPECIFIED) is a span without kind.
_KINDS: Final[tuple[SpanKind | None, ...]] = (None, "CLIENT", "SERVER", "PRODUCER", "CONSUMER")


def _message(name: str, fields: list[tuple[str, int, int, str | None, int]]) -> descriptor_pb2.DescriptorProto:
    """A message type; each field is (name, number, type, type name or None, label)."""
    message = descriptor_pb2.DescriptorProto(name=name)
    for field_name, number, field_type, type_name, label in fields:
        field = message.field.add(name=field_name, number=number, type=field_type, label=label)
        if type_name is not None:
            field.type_name = type_name
    return message


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """zipkin.proto's messages, field for field."""
    file = descriptor_pb2.FileDescriptorProto(name="tracemesh/zipkin_proto3.proto", package=_PACKAGE,
                                              syntax="proto3")
    span = _message("Span", [
        ("trace_id", 1, _FIELD.TYPE_BYTES, None, _OPTIONAL),
        ("parent_id", 2, _FIELD.TYPE_BYTES, None, _OPTIONAL),
        ("id", 3, _FIELD.TYPE_BYTES, None, _OPTIONAL),
        ("kind", 4, _FIELD.TYPE_ENUM, f".{_PACKAGE}.Span.Kind", _OPTIONAL),
        ("name", 5, _FIELD.TYPE_STRING, None, _OPTIONAL),
        ("timestamp", 6, _FIELD.TYPE_FIXED64, None, _OPTIONAL),
        ("duration", 7, _FIELD.TYPE_UINT64, None, _OPTIONAL),
        ("local_endpoint", 8, _FIELD.TYPE_MESSAGE, f".{_PACKAGE}.Endpoint", _OPTIONAL),
        ("remote_endpoint", 9, _FIELD.TYPE_MESSAGE, f".{_PACKAGE}.Endpoint", _OPTIONAL),
        ("annotations", 10, _FIELD.TYPE_MESSAGE, f".{_PACKAGE}.Annotation", _REPEATED),
        ("tags", 11, _FIELD.TYPE_MESSAGE, f".{_PACKAGE}.Span.TagsEntry", _REPEATED),
        ("debug", 12, _FIELD.TYPE_BOOL, None, _OPTIONAL),
        ("shared", 13, _FIELD.TYPE_BOOL, None, _OPTIONAL),
    ])
    kind = span.enum_type.add(name="Kind")
    for number, name in enumerate(("SPAN_KIND_UNSPECIFIED", "CLIENT", "SERVER", "PRODUCER", "CONSUMER")):
        kind.value.add(name=name, number=number)
    # `map<string, string> tags` is, on the wire and in descriptors, a repeated nested entry message.
    tags_entry = _message("TagsEntry", [("key", 1, _FIELD.TYPE_STRING, None, _OPTIONAL),
                                        ("value", 2, _FIELD.TYPE_STRING, None, _OPTIONAL)])
    tags_entry.options.map_entry = True
    span.nested_type.append(tags_entry)
    file.message_type.extend([
        span,
        _message("Endpoint", [("service_name", 1, _FIELD.TYPE_STRING, None, _OPTIONAL),
                              ("ipv4", 2, _FIELD.TYPE_BYTES, None, _OPTIONAL),
                              ("ipv6", 3, _FIELD.TYPE_BYTES, None, _OPTIONAL),
                              ("port", 4, _FIELD.TYPE_INT32, None, _OPTIONAL)]),
        _message("Annotation", [("timestamp", 1, _FIELD.TYPE_FIXED64, None, _OPTIONAL),
                                ("value", 2, _FIELD.TYPE_STRING, None, _OPTIONAL)]),
        _message("ListOfSpans", [("spans", 1, _FIELD.TYPE_MESSAGE, f".{_PACKAGE}.Span", _REPEATED)]),
    ])
    return file


# A private pool: classes generated from the official zipkin.proto (as in the tests, or in an
# application embedding the sidecar) register the same full names in the default pool.
_POOL: Final = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())
ListOfSpans: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.ListOfSpans"))

# ---------------------------------------------------------------------------------------------
# Encoding


def encode_spans(spans: Iterable[Span]) -> bytes:
    """A proto3 `ListOfSpans` request body."""
    message = ListOfSpans()
    for span in spans:
        target = message.spans.add()
        target.trace_id = bytes.fromhex(span.trace_id)
        if span.parent_id:
            target.parent_id = bytes.fromhex(span.parent_id)
        target.id = bytes.fromhex(span.id)
        target.kind = _KINDS.index(span.kind)
        target.name = span.name
        target.timestamp = span.timestamp
        target.duration = span.duration
        _fill_endpoint(target.local_endpoint, span.local_endpoint)
        if span.remote_endpoint is not None:
            _fill_endpoint(target.remote_endpoint, span.remote_endpoint)
        for annotation in span.annotations:
            target.annotations.add(timestamp=annotation.timestamp, value=annotation.value)
        target.tags.update(span.tags)
        target.debug = span.debug
        target.shared = span.shared
    result: bytes = message.SerializeToString(deterministic=True)  # tags sorted: stable bytes
    return result


def _fill_endpoint(target: Any, endpoint: Endpoint) -> None:
    if endpoint.service_name:
        target.service_name = endpoint.service_name
    if endpoint.ipv4:
        target.ipv4 = ipaddress.IPv4Address(endpoint.ipv4).packed
    if endpoint.ipv6:
        target.ipv6 = ipaddress.IPv6Address(endpoint.ipv6).packed
    if endpoint.port:
        target.port = endpoint.port


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_spans(body: bytes) -> list[Span]:
    """Spans from a proto3 `ListOfSpans` body; raises SpanDecodeError naming the span and the field."""
    message = ListOfSpans()
    try:
        message.ParseFromString(body)
    except DecodeError as error:
        raise SpanDecodeError("body", f"is not a Zipkin proto3 ListOfSpans ({error})") from None
    return [_span(span, f"span[{index}]") for index, span in enumerate(message.spans)]


def _span(message: Any, path: str) -> Span:
    if message.kind >= len(_KINDS):
        raise SpanDecodeError(f"{path}.kind", f"is {message.kind}, not a Span.Kind")
    return Span(
        trace_id=normalize_trace_id(id_from_bytes(message.trace_id, f"{path}.trace_id", (8, 16))),
        parent_id=_parent_id(message.parent_id, f"{path}.parent_id"),
        id=id_from_bytes(message.id, f"{path}.id", (8,)),
        kind=_KINDS[message.kind],
        name=message.name,
        timestamp=message.timestamp,
        duration=message.duration,
        local_endpoint=_endpoint(message.local_endpoint, f"{path}.local_endpoint"),
        remote_endpoint=(_endpoint(message.remote_endpoint, f"{path}.remote_endpoint")
                         if message.HasField("remote_endpoint") else None),
        annotations=[Annotation(timestamp=item.timestamp, value=item.value) for item in message.annotations],
        tags=dict(message.tags),
        debug=message.debug,
        shared=message.shared,
    )


def _parent_id(value: bytes, path: str) -> str | None:
    """Like Zipkin, an all-zero parent id means the span is a root."""
    return id_from_bytes(value, path, (8,)) if any(value) or len(value) not in (0, 8) else None


def _endpoint(message: Any, path: str) -> Endpoint:
    if message.ipv4 and len(message.ipv4) != 4:
        raise SpanDecodeError(f"{path}.ipv4", f"must be 4 bytes, got {len(message.ipv4)}")
    if message.ipv6 and len(message.ipv6) != 16:
        raise SpanDecodeError(f"{path}.ipv6", f"must be 16 bytes, got {len(message.ipv6)}")
    if not 0 <= message.port <= 65535:
        raise SpanDecodeError(f"{path}.port", f"must be a port 0-65535, got {message.port}")
    return Endpoint(
        service_name=message.service_name or None,
        ipv4=str(ipaddress.IPv4Address(message.ipv4)) if message.ipv4 else None,
        ipv6=str(ipaddress.IPv6Address(message.ipv6)) if message.ipv6 else None,
        port=message.port or None,
    )
