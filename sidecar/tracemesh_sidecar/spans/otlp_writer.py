"""An OTLP `ExportTraceServiceRequest` written as protobuf bytes straight from the Span model.

Written by hand, beside protobuf's classes (which still decode, and which the tests compare this output
with byte for byte), because filling upb messages field by field (a sidecar span has ~20 attributes, three
Python-to-upb calls each) held the sidecar's event loop 16.5 ms for a 500-span batch, and the requests that
arrived meanwhile waited; written here, 3.4 ms (Zipkin JSON through orjson: 1.0; same run, 2026-12-03).
Compiled by mypyc with the rest of the package.

The layout follows opentelemetry-proto's trace.proto and common.proto (field numbers below), in protobuf's
own order: fields by number, proto3 defaults (empty strings, zeros) left out. The reader of the same wire
format is otlp_wire.py.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Final

from tracemesh_sidecar.spans.model import Span, SpanKind

SERVICE_NAME: Final = "service.name"  # the resource attribute
PEER_IP: Final = "net.peer.ip"
PEER_PORT: Final = "net.peer.port"
PEER_SERVICE: Final = "peer.service"
HOST_IP: Final = "net.host.ip"
HOST_PORT: Final = "net.host.port"
SCOPE_NAME: Final = "tracemesh"
# Span.SpanKind's numbers: a span without kind is INTERNAL.
KIND_NUMBERS: Final[dict[SpanKind | None, int]] = {None: 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}

# ExportTraceServiceRequest.resource_spans = 1; ResourceSpans.resource = 1, .scope_spans = 2;
# Resource.attributes = 1; ScopeSpans.scope = 1, .spans = 2; InstrumentationScope.name = 1.
_FIELD_1: Final = b"\x0a"  # field 1, length-delimited
_FIELD_2: Final = b"\x12"  # field 2, length-delimited
# Span: trace_id = 1, span_id = 2, parent_span_id = 4, name = 5, kind = 6, start_time_unix_nano = 7 (fixed64),
# end_time_unix_nano = 8 (fixed64), attributes = 9, events = 11, status = 15.
_TRACE_ID: Final = b"\x0a\x10"  # 16 bytes
_SPAN_ID: Final = b"\x12\x08"  # 8 bytes
_PARENT_SPAN_ID: Final = b"\x22\x08"
_NAME: Final = b"\x2a"
_KIND: Final = b"\x30"
_START: Final = b"\x39"
_END: Final = b"\x41"
_ATTRIBUTE: Final = b"\x4a"
_EVENT: Final = b"\x5a"
_STATUS_ERROR: Final = b"\x7a\x02\x18\x02"  # Status{code (3) = STATUS_CODE_ERROR (2)}
# Event: time_unix_nano = 1 (fixed64), name = 2. AnyValue: string_value = 1, int_value = 3 (varint).
_EVENT_TIME: Final = b"\x09"
_INT_VALUE: Final = b"\x18"
_FIXED64: Final = struct.Struct("<Q")
_ONE_BYTE: Final = tuple(bytes((value,)) for value in range(0x80))
# Each attribute key's field (tag, length, UTF-8), built once: a sidecar's spans use the same ~20 keys. Bounded,
# since a span's tags may come from a request (custom header tags, baggage): keys beyond it are encoded anew.
_KEY_FIELDS: Final[dict[str, bytes]] = {}
_KEY_FIELDS_MAX: Final = 1024
# Each span attribute's whole field by key and value, built once: most of a sidecar span's attributes repeat from
# span to span (its identity, the method, the status, the cluster, the peer's address), and a dict lookup costs a
# fraction of encoding one (the batch: ~40% less time). Bounded by keys, by values per key (a key whose values
# differ every time, like the request id, fills its few places and is encoded anew after that) and by size.
_SPAN_ATTRIBUTES: Final[dict[str, dict[str, bytes]]] = {}
_CACHED_KEYS_MAX: Final = 128
_CACHED_VALUES_PER_KEY: Final = 32
_CACHED_FIELD_MAX_BYTES: Final = 256


def varint(value: int) -> bytes:
    """A non-negative integer as a protobuf varint (ValueError for a negative one: nothing written here is
    signed, and indexing _ONE_BYTE with it would write a wrong byte)."""
    if value < 0x80:
        if value < 0:
            raise ValueError(f"a varint here is never negative, got {value}")
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_request(spans: Iterable[Span], resource: Sequence[tuple[str, str]] = ()) -> bytes:
    """An ExportTraceServiceRequest (the OTLP/HTTP body, the OTLP/gRPC message): one ResourceSpans per local
    service name, in order of first appearance, with one ScopeSpans each.

    `resource` holds detected resource attributes; as Envoy merges detected resources
    (resource_detectors/resource_provider.cc), they override `service.name` too.
    """
    by_service: dict[str | None, list[bytes]] = {}
    for span in spans:
        service = span.local_endpoint.service_name
        encoded = by_service.get(service)
        if encoded is None:
            encoded = by_service[service] = []
        encoded.append(_length_delimited(_FIELD_2, _span(span)))  # ScopeSpans.spans
    parts: list[bytes] = []
    for service, encoded in by_service.items():
        attributes = ({SERVICE_NAME: service} if service is not None else {}) | dict(resource)
        resource_field = b""
        if attributes:
            resource_field = _length_delimited(_FIELD_1, b"".join(  # ResourceSpans.resource
                _string_attribute(_FIELD_1, key, value) for key, value in attributes.items()))
        scope_spans = _length_delimited(_FIELD_2, b"".join([_SCOPE, *encoded]))
        parts.append(_length_delimited(_FIELD_1, resource_field + scope_spans))
    return b"".join(parts)


def _span(span: Span) -> bytes:
    parts = [_TRACE_ID, bytes.fromhex(span.trace_id.rjust(32, "0")), _SPAN_ID, bytes.fromhex(span.id)]
    if span.parent_id:
        parts += (_PARENT_SPAN_ID, bytes.fromhex(span.parent_id))
    if span.name:
        parts.append(_length_delimited(_NAME, span.name.encode()))
    parts += (_KIND, _ONE_BYTE[KIND_NUMBERS[span.kind]])
    start = span.timestamp * 1000
    end = (span.timestamp + span.duration) * 1000
    if start:
        parts += (_START, _FIXED64.pack(start))
    if end:
        parts += (_END, _FIXED64.pack(end))
    for key, value in span.tags.items():
        parts.append(_span_attribute(key, value))
    local = span.local_endpoint
    _endpoint_attributes(parts, local.ipv4 or local.ipv6, local.port, HOST_IP, HOST_PORT)
    remote = span.remote_endpoint
    if remote is not None:
        if remote.service_name:
            parts.append(_span_attribute(PEER_SERVICE, remote.service_name))
        _endpoint_attributes(parts, remote.ipv4 or remote.ipv6, remote.port, PEER_IP, PEER_PORT)
    for annotation in span.annotations:
        event = b""
        if annotation.timestamp:
            event = _EVENT_TIME + _FIXED64.pack(annotation.timestamp * 1000)
        if annotation.value:
            event += _length_delimited(_FIELD_2, annotation.value.encode())
        parts.append(_length_delimited(_EVENT, event))
    if span.tags.get("error") == "true":
        parts.append(_STATUS_ERROR)
    return b"".join(parts)


def _endpoint_attributes(parts: list[bytes], ip: str | None, port: int | None, ip_key: str, port_key: str) -> None:
    if ip:
        parts.append(_span_attribute(ip_key, ip))
    if port:
        any_value = _INT_VALUE + varint(port)
        parts.append(_length_delimited(_ATTRIBUTE, _key_field(port_key) + _length_delimited(_FIELD_2, any_value)))


def _span_attribute(key: str, value: str) -> bytes:
    """A Span.attributes field with a string value, from _SPAN_ATTRIBUTES when there."""
    values = _SPAN_ATTRIBUTES.get(key)
    if values is None:
        if len(_SPAN_ATTRIBUTES) >= _CACHED_KEYS_MAX:
            return _string_attribute(_ATTRIBUTE, key, value)
        values = _SPAN_ATTRIBUTES[key] = {}
    field = values.get(value)
    if field is None:
        field = _string_attribute(_ATTRIBUTE, key, value)
        if len(values) < _CACHED_VALUES_PER_KEY and len(field) <= _CACHED_FIELD_MAX_BYTES:
            values[value] = field
    return field


def _string_attribute(tag: bytes, key: str, value: str) -> bytes:
    """A KeyValue{key, value: AnyValue{string_value}} field: `tag`, length, the message. One allocation where
    every length fits a varint's byte (values under ~100 bytes: most of a sidecar span's)."""
    key_field = _key_field(key)
    text = value.encode()
    any_length = 2 + len(text)  # AnyValue: tag, length, text
    length = len(key_field) + 2 + any_length  # KeyValue: key field, tag, length, AnyValue
    if length < 0x80:
        return b"%b%b%b\x12%b\x0a%b%b" % (tag, _ONE_BYTE[length], key_field, _ONE_BYTE[any_length],
                                          _ONE_BYTE[len(text)], text)
    any_value = _length_delimited(_FIELD_1, text)
    return _length_delimited(tag, key_field + _length_delimited(_FIELD_2, any_value))


def _key_field(key: str) -> bytes:
    field = _KEY_FIELDS.get(key)
    if field is None:
        field = _length_delimited(_FIELD_1, key.encode())
        if len(_KEY_FIELDS) < _KEY_FIELDS_MAX:
            _KEY_FIELDS[key] = field
    return field


def _length_delimited(tag: bytes, payload: bytes) -> bytes:
    return b"%b%b%b" % (tag, varint(len(payload)), payload)


_SCOPE: Final = _length_delimited(_FIELD_1, _length_delimited(_FIELD_1, SCOPE_NAME.encode()))  # ScopeSpans.scope
