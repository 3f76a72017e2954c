"""OTLP trace export requests (`ExportTraceServiceRequest`, the same over HTTP and gRPC) to and from the Span model.

The mapping is the one the OpenTelemetry Collector's Zipkin translator uses (the code Jaeger
runs when it ingests Zipkin), so a span reads the same whichever way it reached a backend:

- one ResourceSpans per `localEndpoint.serviceName`, carried as resource attribute `service.name`;
- kind CLIENT/SERVER/PRODUCER/CONSUMER <-> SPAN_KIND_*, no kind <-> SPAN_KIND_INTERNAL;
- ids as bytes; a 64-bit trace id is left-padded with zeros to the 16 bytes OTLP requires, and a
  trace id whose high half is zero is read back as 64-bit (a random 128-bit id has such a high
  half with probability 2^-64);
- microseconds <-> nanoseconds; tags <-> string attributes; annotations <-> events;
- tag `error=true` <-> status ERROR;
- endpoints as the (pre-1.21 semantic conventions) attributes that translator uses:
  remote `net.peer.ip` / `net.peer.port` / `peer.service`, local `net.host.ip` / `net.host.port`.
  The newer `network.peer.*` names would not be understood by that translator.

`debug` and `shared` have no OTLP counterpart and are not carried. Resource attributes other than
`service.name` (a sender's resource detectors) become tags of each span of that resource, as that
translator writes them to Zipkin; a span's own attribute of the same name wins. What the Zipkin model
cannot hold (typed attributes, the resource, the scope, links, events' attributes, the status) is
decoded into `Span.otlp` as well, for the collector's Jaeger API; encoding ignores it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from tracemesh_sidecar.spans.addresses import address_version
from tracemesh_sidecar.spans.errors import SpanDecodeError
from tracemesh_sidecar.spans.ids import check_hex_id, id_from_bytes, normalize_trace_id
from tracemesh_sidecar.spans.model import (
    Annotation,
    AttributeValue,
    Endpoint,
    OtlpDetail,
    OtlpEvent,
    OtlpLink,
    Span,
    SpanKind,
)
from tracemesh_sidecar.spans.otlp_wire import span_attributes
from tracemesh_sidecar.spans.otlp_writer import (
    HOST_IP,
    HOST_PORT,
    KIND_NUMBERS,
    PEER_IP,
    PEER_PORT,
    PEER_SERVICE,
    SERVICE_NAME,
)

_KIND_FROM_OTLP: Final[dict[int, SpanKind | None]] = {
    value: kind for kind, value in KIND_NUMBERS.items()} | {OtlpSpan.SPAN_KIND_UNSPECIFIED: None}

# Encoding is otlp_writer.py's (encode_request).

@dataclass(frozen=True, slots=True)
class PartialSuccess:
    """What a collector that accepted an export still rejected (`ExportTraceServiceResponse.partial_success`)."""

    rejected_spans: int = 0
    error_message: str = ""


ACCEPTED_WHOLE: Final = PartialSuccess()


def decode_partial_success(body: bytes) -> PartialSuccess:
    """The partial success of an ExportTraceServiceResponse; an unreadable answer counts as accepted whole
    (the transport already said the export succeeded)."""
    response = ExportTraceServiceResponse()
    try:
        response.ParseFromString(body)
    except DecodeError:
        return ACCEPTED_WHOLE
    partial = response.partial_success
    return PartialSuccess(partial.rejected_spans, partial.error_message)


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_request_proto(body: bytes) -> list[Span]:
    """Spans from an OTLP/HTTP protobuf body; raises SpanDecodeError naming the field."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as error:
        raise SpanDecodeError("body", f"is not an OTLP ExportTraceServiceRequest in protobuf ({error})") from None
    return _spans_from_request(request)


def decode_request_json(body: bytes) -> list[Span]:
    """Spans from an OTLP/HTTP JSON body; raises SpanDecodeError naming the field.

    OTLP JSON writes trace and span ids as hex, where protobuf's JSON mapping (json_format)
    expects base64 for `bytes`; the ids are therefore turned into base64 before json_format
    reads the rest (camelCase or snake_case names, enums as names or numbers, int64 as strings).
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SpanDecodeError("body", f"is not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise SpanDecodeError("body", "must be a JSON object (an OTLP ExportTraceServiceRequest)")
    for path, span in _json_spans(document):
        _hex_ids_to_base64(span, path, (("traceId", "trace_id", 32), ("spanId", "span_id", 16),
                                        ("parentSpanId", "parent_span_id", 16)))
        for link_path, link in _json_items(span, "links", path):
            _hex_ids_to_base64(link, link_path, (("traceId", "trace_id", 32), ("spanId", "span_id", 16)))
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as error:
        raise SpanDecodeError("body", f"is not an OTLP ExportTraceServiceRequest ({error})") from None
    return _spans_from_request(request)


def _json_spans(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for resource_path, resource_spans in _json_items(document, "resourceSpans", ""):
        for scope_path, scope_spans in _json_items(resource_spans, "scopeSpans", resource_path):
            yield from _json_items(scope_spans, "spans", scope_path)


def _json_items(parent: dict[str, Any], key: str, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The objects in list `key` (camelCase or proto name) of `parent`, each with its path."""
    snake = "".join(f"_{char.lower()}" if char.isupper() else char for char in key)
    name = key if key in parent else snake
    items = parent.get(name)
    prefix = f"{path}.{key}" if path else key
    if items is None:
        return
    if not isinstance(items, list):
        raise SpanDecodeError(prefix, "must be an array")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise SpanDecodeError(f"{prefix}[{index}]", "must be a JSON object")
        yield f"{prefix}[{index}]", item


def _hex_ids_to_base64(item: dict[str, Any], path: str, keys: tuple[tuple[str, str, int], ...]) -> None:
    for camel, snake, length in keys:
        key = camel if camel in item else snake
        value = item.get(key)
        if value is None or value == "":
            continue
        what = f"{length} hex characters"
        hex_id = check_hex_id(value, f"{path}.{camel}", (length,), what)
        item[key] = base64.b64encode(binascii.unhexlify(hex_id)).decode()


def _spans_from_request(request: Any) -> list[Span]:
    spans = []
    for resource_index, resource_spans in enumerate(request.resource_spans):
        typed_resource = _typed_attributes(resource_spans.resource.attributes)
        service_value = typed_resource.pop(SERVICE_NAME, None)
        service = None if service_value is None else _text(service_value)
        resource = {key: _text(value) for key, value in typed_resource.items()}
        resource_path = f"resourceSpans[{resource_index}]"
        for scope_index, scope_spans in enumerate(resource_spans.scope_spans):
            scope_path = f"{resource_path}.scopeSpans[{scope_index}]"
            scope = scope_spans.scope
            for span_index, otlp_span in enumerate(scope_spans.spans):
                span_path = f"{scope_path}.spans[{span_index}]"
                # once, for the tags and the detail; from the span's bytes unless one is an array or a map
                attributes = span_attributes(otlp_span.SerializeToString())
                if attributes is None:
                    attributes = _typed_attributes(otlp_span.attributes)
                span = _span(otlp_span, attributes, service, resource, span_path)
                span.otlp = _detail(otlp_span, attributes, typed_resource, scope.name, scope.version, span_path)
                spans.append(span)
    return spans


def _detail(otlp: Any, attributes: dict[str, AttributeValue], resource: dict[str, AttributeValue], scope_name: str,
            scope_version: str, path: str) -> OtlpDetail:
    """What the Zipkin model drops, kept with its types for the Jaeger API."""
    links = [OtlpLink(trace_id=id_from_bytes(link.trace_id, f"{path}.links[{index}].traceId", (16,)),
                      span_id=id_from_bytes(link.span_id, f"{path}.links[{index}].spanId", (8,)),
                      attributes=_typed_attributes(link.attributes))
             for index, link in enumerate(otlp.links)]
    events = [OtlpEvent(timestamp=event.time_unix_nano // 1000, name=event.name,
                        attributes=_typed_attributes(event.attributes)) for event in otlp.events]
    return OtlpDetail(resource=resource, scope_name=scope_name, scope_version=scope_version,
                      attributes=attributes, links=links, events=events,
                      status_code=otlp.status.code, status_message=otlp.status.message,
                      trace_state=otlp.trace_state, internal=otlp.kind == OtlpSpan.SPAN_KIND_INTERNAL,
                      flags=otlp.flags)


def _typed_attributes(attributes: Any) -> dict[str, AttributeValue]:
    return {attribute.key: _typed_value(attribute.value) for attribute in attributes}


def _typed_value(value: Any) -> AttributeValue:
    """A scalar attribute value as itself; an array or map as its JSON text (as pcommon.Value.AsString writes it)."""
    which = value.WhichOneof("value")
    if which in ("array_value", "kvlist_value"):
        return _text(_python_value(value))
    if which is None:
        return ""
    scalar: AttributeValue = getattr(value, which)
    return scalar


def _span(otlp: Any, attributes: dict[str, AttributeValue], service: str | None, resource: dict[str, str],
          path: str) -> Span:
    trace_id = normalize_trace_id(id_from_bytes(otlp.trace_id, f"{path}.traceId", (16,)))
    parent_id = None
    if otlp.parent_span_id:
        parent_id = id_from_bytes(otlp.parent_span_id, f"{path}.parentSpanId", (8,))
    if otlp.kind not in _KIND_FROM_OTLP:
        raise SpanDecodeError(f"{path}.kind", f"is {otlp.kind}, not a known SpanKind")
    start, end = otlp.start_time_unix_nano, otlp.end_time_unix_nano
    if end < start:
        raise SpanDecodeError(f"{path}.endTimeUnixNano", f"({end}) is before startTimeUnixNano ({start})")
    tags = resource | {key: value if isinstance(value, str) else _tag_text(value) for key, value in attributes.items()}
    local = _pop_endpoint(tags, HOST_IP, HOST_PORT)
    local.service_name = service
    remote = _pop_endpoint(tags, PEER_IP, PEER_PORT)
    remote.service_name = tags.pop(PEER_SERVICE, None)
    if otlp.status.code == Status.STATUS_CODE_ERROR:
        tags.setdefault("error", otlp.status.message or "true")
    return Span(
        trace_id=trace_id,
        id=id_from_bytes(otlp.span_id, f"{path}.spanId", (8,)),
        parent_id=parent_id,
        name=otlp.name,
        kind=_KIND_FROM_OTLP[otlp.kind],
        timestamp=start // 1000,
        duration=(end - start) // 1000,
        local_endpoint=local,
        remote_endpoint=remote if remote != Endpoint() else None,
        tags=tags,
        annotations=[Annotation(timestamp=event.time_unix_nano // 1000, value=event.name)
                     for event in otlp.events],
    )


def _pop_endpoint(tags: dict[str, str], ip_key: str, port_key: str) -> Endpoint:
    """The endpoint described by attributes `ip_key`/`port_key`, taken out of `tags` when well-formed."""
    endpoint = Endpoint()
    ip_text = tags.get(ip_key)
    if ip_text is not None:
        version = address_version(ip_text)
        if version:  # else not an address: it stays an ordinary tag
            del tags[ip_key]
            if version == 4:
                endpoint.ipv4 = ip_text
            else:
                endpoint.ipv6 = ip_text
    port_text = tags.get(port_key)
    if port_text is not None and port_text.isdigit() and 0 < int(port_text) < 65536:
        del tags[port_key]
        endpoint.port = int(port_text)
    return endpoint


def _tag_text(value: AttributeValue) -> str:
    """A typed attribute value (_typed_value) as the string a Zipkin tag holds: bytes as base64."""
    return base64.b64encode(value).decode() if isinstance(value, bytes) else _text(value)


def _python_value(value: Any) -> object:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_python_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return {item.key: _python_value(item.value) for item in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, which) if which else ""


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))

