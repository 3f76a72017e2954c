"""Zipkin v2 JSON (`ListOfSpans`, as `POST /api/v2/spans` takes it) to and from the Span model.

Encoding follows the official API (`zipkin2-api.yaml`): camelCase fields, absent rather than
empty/zero/false. Decoding validates strictly and is all-or-nothing for a batch; it is
liberal only where Zipkin's own reader is: uppercase hex is lowercased, `null` means
absent, unknown fields are ignored, an all-zero `parentId` means no parent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, get_args

import orjson

from tracemesh_sidecar.spans.addresses import address_version
from tracemesh_sidecar.spans.errors import SpanDecodeError
from tracemesh_sidecar.spans.ids import check_hex_id, normalize_trace_id
from tracemesh_sidecar.spans.model import Annotation, Endpoint, Span, SpanKind

SPAN_KINDS: Final[tuple[SpanKind, ...]] = get_args(SpanKind)
TRACE_ID: Final = "16 or 32 lowercase hex characters"
SPAN_ID: Final = "16 lowercase hex characters"
_ZERO_SPAN_ID: Final = "0" * 16

# ---------------------------------------------------------------------------------------------
# Encoding


def span_to_zipkin_dict(span: Span, local: dict[str, Any] | None = None) -> dict[str, Any]:
    """One span as Zipkin v2 JSON; fields without a value are left out, as Zipkin writes them. `local`: the local
    endpoint's dict, when the caller has it already."""
    result: dict[str, Any] = {"traceId": span.trace_id}
    if span.parent_id:
        result["parentId"] = span.parent_id
    result["id"] = span.id
    if span.kind:
        result["kind"] = span.kind
    if span.name:
        result["name"] = span.name
    if span.timestamp:
        result["timestamp"] = span.timestamp
    if span.duration:
        result["duration"] = span.duration
    if local is None:
        local = _endpoint_dict(span.local_endpoint)
    if local:
        result["localEndpoint"] = local
    remote = _endpoint_dict(span.remote_endpoint) if span.remote_endpoint else None
    if remote:
        result["remoteEndpoint"] = remote
    if span.annotations:
        result["annotations"] = [{"timestamp": a.timestamp, "value": a.value} for a in span.annotations]
    if span.tags:
        result["tags"] = span.tags  # not copied: every caller serializes the document as it is
    if span.debug:
        result["debug"] = True
    if span.shared:
        result["shared"] = True
    return result


def _endpoint_dict(endpoint: Endpoint) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if endpoint.service_name:
        result["serviceName"] = endpoint.service_name
    if endpoint.ipv4:
        result["ipv4"] = endpoint.ipv4
    if endpoint.ipv6:
        result["ipv6"] = endpoint.ipv6
    if endpoint.port:  # the spec: "Please don't set to zero"
        result["port"] = endpoint.port
    return result


def encode_spans(spans: Iterable[Span]) -> bytes:
    """A `ListOfSpans` request body.

    orjson rather than the standard library's json: a sidecar encodes every span it reports on
    the same event loop that serves requests, and orjson takes ~1.5 µs a span where json took ~10.
    """
    documents = []
    endpoint: Endpoint | None = None
    local: dict[str, Any] = {}
    for span in spans:
        if span.local_endpoint is not endpoint:  # a sidecar's spans share one: its dict is built once a batch
            endpoint = span.local_endpoint
            local = _endpoint_dict(endpoint)
        documents.append(span_to_zipkin_dict(span, local))
    return orjson.dumps(documents)


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_spans(body: bytes) -> list[Span]:
    """Spans from a `ListOfSpans` body; raises SpanDecodeError naming the span and the field."""
    document = json_array(body, "spans (ListOfSpans)")
    return [span_from_zipkin_dict(item, f"span[{index}]") for index, item in enumerate(document)]


def json_array(body: bytes, of_what: str) -> list[Any]:
    """The JSON array a body holds (Zipkin's v2 and v1 lists); SpanDecodeError when it holds anything else."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise SpanDecodeError("body", f"is not valid JSON ({error})") from None
    if not isinstance(document, list):
        raise SpanDecodeError("body", f"must be a JSON array of {of_what}, got {_type(document)}")
    return document


def span_from_zipkin_dict(data: object, path: str = "span") -> Span:
    """One Zipkin v2 JSON span; `path` prefixes the field in error messages."""
    fields = json_object(data, path)
    parent_id = fields.get("parentId")
    kind = fields.get("kind")
    if kind is not None and kind not in SPAN_KINDS:
        raise SpanDecodeError(f"{path}.kind", f"must be one of {', '.join(SPAN_KINDS)}, got {kind!r}")
    remote = fields.get("remoteEndpoint")
    local = fields.get("localEndpoint")
    parent = None
    if parent_id is not None and parent_id != _ZERO_SPAN_ID:
        parent = check_hex_id(parent_id, f"{path}.parentId", (16,), SPAN_ID)
    return Span(
        trace_id=normalize_trace_id(check_hex_id(fields.get("traceId"), f"{path}.traceId", (16, 32), TRACE_ID)),
        id=check_hex_id(fields.get("id"), f"{path}.id", (16,), SPAN_ID),
        parent_id=parent,
        name=string_field(fields, "name", path) or "",
        kind=kind,
        timestamp=microseconds_field(fields, "timestamp", path),
        duration=microseconds_field(fields, "duration", path),
        local_endpoint=endpoint_from_dict(local, f"{path}.localEndpoint") if local is not None else Endpoint(),
        remote_endpoint=endpoint_from_dict(remote, f"{path}.remoteEndpoint") if remote is not None else None,
        tags=_tags(fields.get("tags"), f"{path}.tags"),
        annotations=_annotations(fields.get("annotations"), f"{path}.annotations"),
        debug=boolean_field(fields, "debug", path),
        shared=boolean_field(fields, "shared", path),
    )


def endpoint_from_dict(data: object, path: str) -> Endpoint:
    """A Zipkin JSON endpoint (v2, and v1 which has the same fields); `path` names it in error messages."""
    fields = json_object(data, path)
    ipv4 = string_field(fields, "ipv4", path)
    ipv6 = string_field(fields, "ipv6", path)
    if ipv4 is not None:
        _check_address(ipv4, 4, f"{path}.ipv4", "an IPv4 address like 10.244.0.5")
    if ipv6 is not None:
        _check_address(ipv6, 6, f"{path}.ipv6", "an IPv6 address like 2001:db8::c001")
    port = fields.get("port")
    if port is not None and (not _is_int(port) or not 0 <= port <= 65535):
        raise SpanDecodeError(f"{path}.port", f"must be an integer port 0-65535, got {port!r}")
    return Endpoint(service_name=string_field(fields, "serviceName", path), ipv4=ipv4, ipv6=ipv6,
                    port=port or None)


def _check_address(value: str, version: int, path: str, what: str) -> None:
    if address_version(value) != version:
        raise SpanDecodeError(path, f"must be {what}, got {value!r}")


def _tags(data: object, path: str) -> dict[str, str]:
    if data is None:
        return {}
    fields = json_object(data, path)
    for key, value in fields.items():
        if not isinstance(value, str):
            raise SpanDecodeError(f"{path}.{key}", f"must be a string, got {_type(value)}")
    return dict(fields)


def _annotations(data: object, path: str) -> list[Annotation]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise SpanDecodeError(path, f"must be an array of annotations, got {_type(data)}")
    result = []
    for index, item in enumerate(data):
        item_path = f"{path}[{index}]"
        fields = json_object(item, item_path)
        value = string_field(fields, "value", item_path)
        if value is None:
            raise SpanDecodeError(f"{item_path}.value", "is required")
        if fields.get("timestamp") is None:
            raise SpanDecodeError(f"{item_path}.timestamp", "is required")
        result.append(Annotation(timestamp=microseconds_field(fields, "timestamp", item_path), value=value))
    return result


def json_object(data: object, path: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise SpanDecodeError(path, f"must be a JSON object, got {_type(data)}")
    return data


def string_field(fields: Mapping[str, Any], key: str, path: str) -> str | None:
    value = fields.get(key)
    if value is not None and not isinstance(value, str):
        raise SpanDecodeError(f"{path}.{key}", f"must be a string, got {_type(value)}")
    return value


def microseconds_field(fields: Mapping[str, Any], key: str, path: str) -> int:
    value = fields.get(key)
    if value is None:
        return 0
    if not _is_int(value) or value < 0:
        raise SpanDecodeError(f"{path}.{key}", f"must be a non-negative integer of microseconds, got {value!r}")
    return int(value)


def boolean_field(fields: Mapping[str, Any], key: str, path: str) -> bool:
    value = fields.get(key)
    if value is not None and not isinstance(value, bool):
        raise SpanDecodeError(f"{path}.{key}", f"must be true or false, got {value!r}")
    return bool(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
