"""Zipkin v1 JSON (a list of v1 spans, as `POST /api/v1/spans` takes it) read as Zipkin's V1JsonSpanReader reads it.

openzipkin/zipkin zipkin/src/main/java/zipkin2/internal/V1JsonSpanReader.java (Apache-2.0): a null
field is skipped, an annotation needs `timestamp` and `value`, a binary annotation needs `key`; a
string value is a tag, a `true` value with an endpoint under `ca`/`sa`/`ma` is an address, any
other binary annotation is dropped; unknown fields are ignored. The spans then go through
zipkin_v1.convert, as Zipkin converts them to v2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracemesh_collector.zipkin_v1 import (
    V1Annotation,
    V1BinaryAnnotation,
    V1Span,
    convert_spans,
    empty_endpoint_as_none,
)
from tracemesh_sidecar.spans.errors import SpanDecodeError
from tracemesh_sidecar.spans.ids import check_hex_id, normalize_trace_id
from tracemesh_sidecar.spans.model import Endpoint, Span
from tracemesh_sidecar.spans.zipkin_json import (
    SPAN_ID,
    TRACE_ID,
    boolean_field,
    endpoint_from_dict,
    json_array,
    json_object,
    microseconds_field,
    string_field,
)

_ADDRESS_KEYS = ("ca", "sa", "ma")


def decode_spans(body: bytes) -> list[Span]:
    """v2 spans from a v1 JSON list; raises SpanDecodeError naming the span and the field."""
    document = json_array(body, "Zipkin v1 spans")
    return convert_spans([_v1_span(item, f"span[{index}]") for index, item in enumerate(document)])


def _v1_span(data: object, path: str) -> V1Span:
    fields = {key: value for key, value in json_object(data, path).items() if value is not None}
    parent_id = fields.get("parentId")
    return V1Span(
        trace_id=normalize_trace_id(check_hex_id(fields.get("traceId"), f"{path}.traceId", (16, 32), TRACE_ID)),
        id=check_hex_id(fields.get("id"), f"{path}.id", (16,), SPAN_ID),
        name=string_field(fields, "name", path) or "",
        parent_id=None if parent_id is None else check_hex_id(parent_id, f"{path}.parentId", (16,), SPAN_ID),
        timestamp=microseconds_field(fields, "timestamp", path),
        duration=microseconds_field(fields, "duration", path),
        annotations=[_annotation(item, f"{path}.annotations[{index}]")
                     for index, item in enumerate(_list(fields, "annotations", path))],
        binary_annotations=[binary for index, item in enumerate(_list(fields, "binaryAnnotations", path))
                            if (binary := _binary_annotation(item, f"{path}.binaryAnnotations[{index}]"))],
        debug=boolean_field(fields, "debug", path),
    )


def _annotation(data: object, path: str) -> V1Annotation:
    fields = json_object(data, path)
    value = string_field(fields, "value", path)
    if fields.get("timestamp") is None or value is None:
        raise SpanDecodeError(path, "is an incomplete annotation: it needs timestamp and value")
    return V1Annotation(microseconds_field(fields, "timestamp", path), value, _endpoint(fields, path))


def _binary_annotation(data: object, path: str) -> V1BinaryAnnotation | None:
    fields = {key: value for key, value in json_object(data, path).items() if value is not None}
    key = string_field(fields, "key", path)
    if key is None:
        raise SpanDecodeError(f"{path}.key", "is required")
    value = fields.get("value")
    endpoint = _endpoint(fields, path)
    if isinstance(value, str):
        return V1BinaryAnnotation(key, value, endpoint)
    if value is True and endpoint is not None and key in _ADDRESS_KEYS:
        return V1BinaryAnnotation(key, None, endpoint)
    return None  # numbers, false, or a true that is no address: V1JsonSpanReader drops them


def _endpoint(fields: Mapping[str, Any], path: str) -> Endpoint | None:
    data = fields.get("endpoint")
    return None if data is None else empty_endpoint_as_none(endpoint_from_dict(data, f"{path}.endpoint"))


def _list(fields: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = fields.get(key, [])
    if not isinstance(value, list):
        raise SpanDecodeError(f"{path}.{key}", "must be an array")
    return value
