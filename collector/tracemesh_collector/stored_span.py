"""One stored span report as bytes and back, losing nothing: its Zipkin v2 JSON plus what OTLP said beyond it.

The on-disk form of sqlite_archive. The Zipkin fields use the sidecar's v2 JSON codec; the OTLP
detail (Span.otlp) rides in an `otlp` member, attribute values as JSON values of their own type
(a bytes value as {"base64": ...}, the one type JSON lacks). Pure.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from tracemesh_collector.span_interning import otlp_attributes
from tracemesh_sidecar.spans.model import AttributeValue, OtlpDetail, OtlpEvent, OtlpLink, Span
from tracemesh_sidecar.spans.zipkin_json import span_from_zipkin_dict, span_to_zipkin_dict


def encode(span: Span) -> bytes:
    document = span_to_zipkin_dict(span)
    if span.otlp is not None:
        document["otlp"] = _detail_dict(span.otlp)
    return orjson.dumps(document)


def decode(data: bytes) -> Span:
    document = orjson.loads(data)
    detail = document.pop("otlp", None)
    span = span_from_zipkin_dict(document)
    if detail is not None:
        span.otlp = _detail(detail)
    return span


def _detail_dict(detail: OtlpDetail) -> dict[str, Any]:
    return {
        "resource": _attributes_dict(detail.resource),
        "scope": [detail.scope_name, detail.scope_version],
        "attributes": _attributes_dict(otlp_attributes(detail)),
        "links": [[link.trace_id, link.span_id, _attributes_dict(link.attributes)] for link in detail.links],
        "events": [[event.timestamp, event.name, _attributes_dict(event.attributes)] for event in detail.events],
        "status": [detail.status_code, detail.status_message],
        "traceState": detail.trace_state,
        "internal": detail.internal,
        "flags": detail.flags,
    }


def _detail(data: Mapping[str, Any]) -> OtlpDetail:
    scope_name, scope_version = data["scope"]
    status_code, status_message = data["status"]
    return OtlpDetail(
        resource=_attributes(data["resource"]),
        scope_name=scope_name,
        scope_version=scope_version,
        attributes=_attributes(data["attributes"]),
        links=[OtlpLink(trace_id, span_id, _attributes(attributes)) for trace_id, span_id, attributes in data["links"]],
        events=[OtlpEvent(timestamp, name, _attributes(attributes)) for timestamp, name, attributes in data["events"]],
        status_code=status_code,
        status_message=status_message,
        trace_state=data["traceState"],
        internal=data["internal"],
        flags=data["flags"],
    )


def _attributes_dict(attributes: Mapping[str, AttributeValue]) -> dict[str, Any]:
    return {key: {"base64": base64.b64encode(value).decode()} if isinstance(value, bytes) else value
            for key, value in attributes.items()}


def _attributes(data: Mapping[str, Any]) -> dict[str, AttributeValue]:
    return {key: base64.b64decode(value["base64"]) if isinstance(value, dict) else value
            for key, value in data.items()}
