"""Spans to and from the JSON the Jaeger query API serves (`/api/traces`), the shape the Jaeger UI reads.

Zipkin fields with no Jaeger field travel as tags, the way Jaeger's own Zipkin converter
carries them: the kind as `span.kind`, the remote endpoint as `peer.service`, `peer.ipv4`,
`peer.ipv6`, `peer.port`, the local endpoint as the process (`serviceName` and the tags `ip`,
`ipv6`, `port`); annotations are logs with one `event` field; `debug` is flag bit 2. Reading is
liberal about what a real Jaeger writes: unpadded hex ids, typed tag values (numbers, booleans,
a numeric `ip`), logs with several fields. Zipkin's `shared` flag has no Jaeger form and is lost.

Jaeger v2 stores what it ingests as OTLP and serves it through the OpenTelemetry Collector's
translator (jaeger: internal/storage/v2/v1adapter/translator.go, V1BatchesFromTraces ->
opentelemetry-collector-contrib pkg/translator/jaeger): resource attributes become process tags,
span attributes span tags. Its processes therefore have no `ip`; the endpoints arrive as the span
tags a sender's OTLP carried them in, `net.host.ip`/`net.host.port` (local) and
`net.peer.ip`/`net.peer.port` (remote), which are read back into the endpoints here.

A span the collector received as OTLP is served the way that translator writes it (otlp_jaeger):
typed tags, the resource as process tags, the scope, links and events; a span received as Zipkin
is served as Jaeger's Zipkin converter writes it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, get_args

from tracemesh_collector.otlp_jaeger import otlp_process, otlp_span_to_jaeger
from tracemesh_sidecar.spans.errors import SpanDecodeError
from tracemesh_sidecar.spans.ids import check_hex_id
from tracemesh_sidecar.spans.model import Annotation, Endpoint, Span, SpanKind
from tracemesh_sidecar.spans.otlp_writer import HOST_IP, HOST_PORT, PEER_IP, PEER_PORT

_KINDS: tuple[SpanKind, ...] = get_args(SpanKind)
_SAMPLED, _DEBUG = 1, 2
_PEER_TAGS = ("peer.service", "peer.ipv4", "peer.ipv6", "peer.port")

# ---------------------------------------------------------------------------------------------
# Span -> Jaeger


def trace_to_jaeger(spans: Sequence[Span]) -> dict[str, Any]:
    """One trace (spans sharing a trace id) as a Jaeger UI trace object."""
    processes: dict[tuple[Any, ...], str] = {}
    process_bodies: dict[str, dict[str, Any]] = {}
    jaeger_spans = []
    for span in spans:
        key, process = otlp_process(span) if span.otlp is not None else _zipkin_process(span.local_endpoint)
        process_id = processes.setdefault(key, f"p{len(processes) + 1}")
        process_bodies.setdefault(process_id, process)
        jaeger_spans.append(otlp_span_to_jaeger(span, process_id) if span.otlp is not None
                            else _span_to_jaeger(span, process_id))
    return {
        "traceID": spans[0].trace_id if spans else "",
        "spans": jaeger_spans,
        "processes": process_bodies,
        "warnings": None,
    }


def _zipkin_process(endpoint: Endpoint) -> tuple[tuple[Any, ...], dict[str, Any]]:
    key = (endpoint.service_name, endpoint.ipv4, endpoint.ipv6, endpoint.port)
    return key, _process(*key)


def _span_to_jaeger(span: Span, process_id: str) -> dict[str, Any]:
    tags = []
    if span.kind:
        tags.append(_tag("span.kind", span.kind.lower()))
    tags += [_tag(key, value) for key, value in span.tags.items()]
    remote = span.remote_endpoint
    if remote is not None:
        tags += _endpoint_tags(remote, "peer.service", "peer.ipv4", "peer.ipv6", "peer.port")
    references = []
    if span.parent_id:
        references.append({"refType": "CHILD_OF", "traceID": span.trace_id, "spanID": span.parent_id})
    return {
        "traceID": span.trace_id,
        "spanID": span.id,
        "flags": _SAMPLED | (_DEBUG if span.debug else 0),
        "operationName": span.name,
        "references": references,
        "startTime": span.timestamp,
        "duration": span.duration,
        "tags": tags,
        "logs": [{"timestamp": a.timestamp, "fields": [_tag("event", a.value)]} for a in span.annotations],
        "processID": process_id,
        "warnings": None,
    }


def _process(service_name: str | None, ipv4: str | None, ipv6: str | None, port: int | None) -> dict[str, Any]:
    endpoint = Endpoint(service_name, ipv4, ipv6, port)
    return {"serviceName": service_name or "", "tags": _endpoint_tags(endpoint, None, "ip", "ipv6", "port")}


def _endpoint_tags(endpoint: Endpoint, service_key: str | None, ipv4_key: str, ipv6_key: str,
                   port_key: str) -> list[dict[str, Any]]:
    """`service_key` None: the service is carried elsewhere (a process's serviceName)."""
    tags = []
    if endpoint.service_name and service_key:
        tags.append(_tag(service_key, endpoint.service_name))
    if endpoint.ipv4:
        tags.append(_tag(ipv4_key, endpoint.ipv4))
    if endpoint.ipv6:
        tags.append(_tag(ipv6_key, endpoint.ipv6))
    if endpoint.port:
        tags.append({"key": port_key, "type": "int64", "value": endpoint.port})
    return tags


def _tag(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "type": "string", "value": value}




# ---------------------------------------------------------------------------------------------
# Jaeger -> Span


def trace_from_jaeger(data: object, path: str = "trace") -> list[Span]:
    """The spans of one Jaeger trace object; raises SpanDecodeError naming the field that is wrong."""
    trace = _object(data, path)
    processes = _object(trace.get("processes") or {}, f"{path}.processes")
    spans = trace.get("spans")
    if not isinstance(spans, list):
        raise SpanDecodeError(f"{path}.spans", "must be an array of spans")
    return [_span_from_jaeger(item, processes, f"{path}.spans[{index}]") for index, item in enumerate(spans)]


def _span_from_jaeger(data: object, processes: Mapping[str, Any], path: str) -> Span:
    fields = _object(data, path)
    trace_id = _hex_id(fields.get("traceID"), f"{path}.traceID", trace=True)
    tags = _tag_values(fields.get("tags"), f"{path}.tags")
    kind_text = tags.pop("span.kind", "").upper()
    peer = {key: tags.pop(key) for key in _PEER_TAGS if key in tags}
    otel_local, otel_remote = _otel_endpoint(tags, HOST_IP, HOST_PORT), _otel_endpoint(tags, PEER_IP, PEER_PORT)
    remote = _either(_endpoint(peer.get("peer.service"), peer.get("peer.ipv4"), peer.get("peer.ipv6"),
                               peer.get("peer.port")), otel_remote)
    process_id = fields.get("processID")
    process = fields.get("process") or processes.get(process_id if isinstance(process_id, str) else "")
    if process is None:
        raise SpanDecodeError(f"{path}.processID", f"names no entry of the trace's processes: {process_id!r}")
    flags = fields.get("flags") or 0
    return Span(
        trace_id=trace_id,
        id=_hex_id(fields.get("spanID"), f"{path}.spanID", trace=False),
        parent_id=_parent_id(fields.get("references"), f"{path}.references"),
        name=_string(fields.get("operationName"), f"{path}.operationName"),
        kind=next((kind for kind in _KINDS if kind == kind_text), None),
        timestamp=_microseconds(fields.get("startTime"), f"{path}.startTime"),
        duration=_microseconds(fields.get("duration"), f"{path}.duration"),
        local_endpoint=_either(_process_endpoint(process, f"{path}.process"), otel_local),
        remote_endpoint=remote if remote != Endpoint() else None,
        tags=tags,
        annotations=_annotations(fields.get("logs"), f"{path}.logs"),
        debug=isinstance(flags, int) and bool(flags & _DEBUG),
    )


def _process_endpoint(data: object, path: str) -> Endpoint:
    process = _object(data, path)
    tags = _tag_values(process.get("tags"), f"{path}.tags")
    service = _string(process.get("serviceName"), f"{path}.serviceName")
    return _endpoint(service, tags.get("ip"), tags.get("ipv6"), tags.get("port"))


def _otel_endpoint(tags: dict[str, str], ip_key: str, port_key: str) -> Endpoint:
    """The endpoint in OTLP attribute tags (Jaeger v2's form), taken out of `tags`."""
    ip, port = tags.pop(ip_key, None), tags.pop(port_key, None)
    ipv6 = ip is not None and ":" in ip
    return _endpoint(None, None if ipv6 else ip, ip if ipv6 else None, port)


def _either(first: Endpoint, fallback: Endpoint) -> Endpoint:
    """`first`, its missing address and port taken from `fallback`."""
    return Endpoint(service_name=first.service_name, ipv4=first.ipv4 or fallback.ipv4,
                    ipv6=first.ipv6 or fallback.ipv6, port=first.port or fallback.port)


def _endpoint(service: str | None, ipv4: str | None, ipv6: str | None, port: str | None) -> Endpoint:
    if ipv4 and ipv4.isdigit():  # Jaeger's Thrift clients report the address as a signed 32-bit number
        ipv4 = str(ipaddress.IPv4Address(int(ipv4) & 0xFFFFFFFF))
    return Endpoint(service_name=service or None, ipv4=ipv4 or None, ipv6=ipv6 or None,
                    port=int(port) if port and port.isdigit() else None)


def _parent_id(data: object, path: str) -> str | None:
    if data is None:
        return None
    if not isinstance(data, list):
        raise SpanDecodeError(path, "must be an array of references")
    references = [_object(item, f"{path}[{index}]") for index, item in enumerate(data)]
    if not references:
        return None
    # a span has one parent; CHILD_OF names it, FOLLOWS_FROM is the next best thing
    index = next((i for i, ref in enumerate(references) if ref.get("refType") == "CHILD_OF"), 0)
    return _hex_id(references[index].get("spanID"), f"{path}[{index}].spanID", trace=False)


def _annotations(data: object, path: str) -> list[Annotation]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise SpanDecodeError(path, "must be an array of logs")
    annotations = []
    for index, item in enumerate(data):
        log = _object(item, f"{path}[{index}]")
        fields = _tag_values(log.get("fields"), f"{path}[{index}].fields")
        value = fields["event"] if list(fields) == ["event"] else " ".join(f"{k}={v}" for k, v in fields.items())
        annotations.append(Annotation(_microseconds(log.get("timestamp"), f"{path}[{index}].timestamp"), value))
    return annotations


def _tag_values(data: object, path: str) -> dict[str, str]:
    """Jaeger's typed key/value list as Zipkin's string tags."""
    if data is None:
        return {}
    if not isinstance(data, list):
        raise SpanDecodeError(path, "must be an array of {key, type, value} objects")
    tags = {}
    for index, item in enumerate(data):
        tag = _object(item, f"{path}[{index}]")
        key = tag.get("key")
        if not isinstance(key, str):
            raise SpanDecodeError(f"{path}[{index}].key", f"must be a string, got {key!r}")
        value = tag.get("value")
        tags[key] = ("true" if value else "false") if isinstance(value, bool) else "" if value is None else str(value)
    return tags


def _hex_id(value: object, path: str, trace: bool) -> str:
    """A Jaeger id, which older Jaegers print without leading zeros, as Zipkin's 16 or 32 hex."""
    if isinstance(value, str) and value:
        width = 16 if len(value) <= 16 or not trace else 32
        value = value.rjust(width, "0")
    lengths, what = ((16, 32), "16 or 32 hex characters") if trace else ((16,), "16 hex characters")
    return check_hex_id(value, path, lengths, what)


def _microseconds(value: object, path: str) -> int:
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SpanDecodeError(path, f"must be a non-negative integer of microseconds, got {value!r}")
    return value


def _string(value: object, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SpanDecodeError(path, f"must be a string, got {value!r}")
    return value


def _object(data: object, path: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise SpanDecodeError(path, f"must be a JSON object, got {type(data).__name__}")
    return data
