"""A span received as OTLP, in the Jaeger UI's JSON, as Jaeger's OTLP translator writes it.

Jaeger serves OTLP-ingested spans through the OpenTelemetry Collector's translator; jaegertracing/jaeger
carries a copy in internal/storage/v2/elasticsearch/tracestore/to_dbmodel.go ("originally copied
from opentelemetry-collector-contrib pkg/translator/jaeger/traces_to_jaegerproto.go", Apache-2.0),
and the UI JSON comes from internal/uimodel/converter/v1/json/from_domain.go. What they do:

- process: `service.name` is the service name (`OTLPResourceNoServiceName` when the resource has no
  attributes at all), every other resource attribute a process tag, with its type;
- span tags, in order: `otel.scope.name`, `otel.scope.version` (when set), the span's attributes with
  their types (int64, float64, bool, string, binary; arrays and maps as JSON strings), `span.kind`
  (internal too), `otel.status_code` OK or `error` = true, `otel.status_description`, `w3c.tracestate`;
- references: CHILD_OF the parent first, then one per link, FOLLOWS_FROM unless the link's
  `opentracing.ref_type` says child_of; a link to the parent retypes the parent reference;
- logs: one per event, an `event` field with its name (unless an attribute is called `event`) then its
  attributes;
- flags are the OTLP span's, left out when zero; in JSON, binary values are base64 and integers outside
  JavaScript's safe range are strings.
"""

from __future__ import annotations

import base64
from typing import Any

from tracemesh_collector.span_interning import otlp_attributes
from tracemesh_sidecar.spans.ids import normalize_trace_id
from tracemesh_sidecar.spans.model import AttributeValue, OtlpDetail, OtlpLink, Span

NO_SERVICE_NAME = "OTLPResourceNoServiceName"
_JS_MAX_SAFE_INTEGER = 2**53 - 1
_OK, _ERROR = 1, 2  # Status.StatusCode
_REF_TYPE, _CHILD_OF = "opentracing.ref_type", "child_of"


def otlp_process(span: Span) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(a key telling processes apart, the process object) for a span decoded from OTLP."""
    detail = _detail(span)
    service = span.local_endpoint.service_name
    if service is None and not detail.resource:
        service = NO_SERVICE_NAME
    tags = [typed_tag(key, value) for key, value in detail.resource.items()]
    key = ("otlp", service, tuple((tag["key"], tag["type"], str(tag["value"])) for tag in tags))
    return key, {"serviceName": service or "", "tags": tags}


def otlp_span_to_jaeger(span: Span, process_id: str) -> dict[str, Any]:
    detail = _detail(span)
    tags = []
    if detail.scope_name:
        tags.append(typed_tag("otel.scope.name", detail.scope_name))
    if detail.scope_version:
        tags.append(typed_tag("otel.scope.version", detail.scope_version))
    tags += [typed_tag(key, value) for key, value in otlp_attributes(detail).items()]
    kind = "internal" if detail.internal else (span.kind or "").lower()
    if kind:
        tags.append(typed_tag("span.kind", kind))
    if detail.status_code == _OK:
        tags.append(typed_tag("otel.status_code", "OK"))
    elif detail.status_code == _ERROR:
        tags.append(typed_tag("error", True))
    if detail.status_message:
        tags.append(typed_tag("otel.status_description", detail.status_message))
    if detail.trace_state:
        tags.append(typed_tag("w3c.tracestate", detail.trace_state))
    logs = []
    for event in detail.events:
        fields = [] if not event.name or "event" in event.attributes else [typed_tag("event", event.name)]
        fields += [typed_tag(key, value) for key, value in event.attributes.items()]
        logs.append({"timestamp": event.timestamp, "fields": fields})
    flags = {"flags": detail.flags} if detail.flags else {}  # uimodel.Span's `flags,omitempty`
    return {
        "traceID": span.trace_id,
        "spanID": span.id,
        **flags,
        "operationName": span.name,
        "references": _references(span, detail.links),
        "startTime": span.timestamp,
        "duration": span.duration,
        "tags": tags,
        "logs": logs,
        "processID": process_id,
        "warnings": None,
    }


def typed_tag(key: str, value: AttributeValue) -> dict[str, Any]:
    """A Jaeger UI key/value with the type the value has."""
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        shown: int | str = value if -_JS_MAX_SAFE_INTEGER <= value <= _JS_MAX_SAFE_INTEGER else str(value)
        return {"key": key, "type": "int64", "value": shown}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    if isinstance(value, bytes):
        return {"key": key, "type": "binary", "value": base64.b64encode(value).decode()}
    return {"key": key, "type": "string", "value": value}


def _references(span: Span, links: list[OtlpLink]) -> list[dict[str, str]]:
    references = []
    if span.parent_id:
        references.append({"refType": "CHILD_OF", "traceID": span.trace_id, "spanID": span.parent_id})
    for link in links:
        ref_type = "CHILD_OF" if link.attributes.get(_REF_TYPE) == _CHILD_OF else "FOLLOWS_FROM"
        trace_id = normalize_trace_id(link.trace_id)
        if span.parent_id and trace_id == span.trace_id and link.span_id == span.parent_id:
            references[0]["refType"] = ref_type  # the parent was already referenced, maybe with the wrong type
            continue
        references.append({"refType": ref_type, "traceID": trace_id, "spanID": link.span_id})
    return references


def _detail(span: Span) -> OtlpDetail:
    if span.otlp is None:
        raise ValueError(f"span {span.id} was not decoded from OTLP")
    return span.otlp
