"""Zipkin v2 JSON span lists decoded for ingest: a typed msgspec schema first, the sidecar's codec when it refuses.

The sidecar's `zipkin_json.decode_spans` checks each field by hand (orjson, then a walk over the
dicts) and names the field that is wrong. msgspec decodes the body straight into typed structs,
checking types, id lengths, kinds and ranges in C (this module checks that ids are hex), for about
half the cost per span (`python -m bench.collector` measures ingest). The schema is stricter than
the codec, never looser: whatever it takes, decode_spans takes with the same spans
(tests/collector/test_zipkin_v2_json.py holds them to that over mutated documents). A body it
refuses, because it is wrong or beyond what the schema covers (an integer past 64 bits, an id that
is not hex or all zeros, an address that is not one), goes to decode_spans, which names the field,
or takes it. Pure.
"""

from __future__ import annotations

from typing import Final

import msgspec

from tracemesh_sidecar.spans import zipkin_json
from tracemesh_sidecar.spans import zipkin_schema as schema
from tracemesh_sidecar.spans.addresses import address_version
from tracemesh_sidecar.spans.ids import is_lowercase_hex, normalize_trace_id
from tracemesh_sidecar.spans.model import Annotation, Endpoint, Span

_ZERO_SPAN_ID: Final = "0" * 16

# Endpoints decoded before, by their fields: a mesh's spans name the same few (service, address, port) over and
# over, so each is checked and built once (building one was about a tenth of ingest: a py-spy profile of
# `python -m bench.collector`). Shared, as the store shares endpoints anyway (span_interning): nothing mutates a
# decoded span's endpoint. Emptied when full: a client sending endless distinct endpoints grows it no further.
ENDPOINTS_KEPT: Final = 4096
_EndpointFields = tuple[str | None, str | None, str | None, int | None]
_endpoints: Final[dict[_EndpointFields, Endpoint]] = {}


class BeyondTheSchema(Exception):
    """A value the schema's types allow and decode_spans refuses: an id that is not hex or is all zeros, an address
    that is not one."""


def decode_spans(body: bytes) -> list[Span]:
    """Spans from a `ListOfSpans` body; raises SpanDecodeError naming the span and the field, as decode_spans does."""
    try:
        return schema_decode(body)
    except (msgspec.DecodeError, BeyondTheSchema):
        return zipkin_json.decode_spans(body)


def schema_decode(body: bytes) -> list[Span]:
    """Spans from a `ListOfSpans` body the schema takes; raises msgspec.DecodeError or BeyondTheSchema otherwise."""
    return [_span(received) for received in schema.LIST_OF_SPANS.decode(body)]


def _span(received: schema.Span) -> Span:
    trace_id, span_id, parent_id = _hex_id(received.trace_id), _hex_id(received.id), received.parent_id
    if (len(trace_id) != 16 and len(trace_id) != 32) or trace_id.count("0") == len(trace_id) \
            or span_id == _ZERO_SPAN_ID:
        raise BeyondTheSchema
    if parent_id is not None:
        parent_id = None if parent_id == _ZERO_SPAN_ID else _hex_id(parent_id)
    local, remote = received.local_endpoint, received.remote_endpoint
    return Span(
        trace_id=normalize_trace_id(trace_id),
        id=span_id,
        parent_id=parent_id,
        name=received.name or "",
        kind=received.kind,
        timestamp=received.timestamp or 0,
        duration=received.duration or 0,
        local_endpoint=_endpoint(local),
        remote_endpoint=None if remote is None else _endpoint(remote),
        tags={} if received.tags is None else received.tags,
        annotations=[] if not received.annotations else [Annotation(annotation.timestamp, annotation.value)
                                                          for annotation in received.annotations],
        debug=bool(received.debug),
        shared=bool(received.shared),
    )


def _hex_id(text: str) -> str:
    """`text` as a lowercase hex id, lowered only when it is not one already (lowering always copies)."""
    if not is_lowercase_hex(text):
        text = text.lower()
        if not is_lowercase_hex(text):
            raise BeyondTheSchema
    return text


def _endpoint(received: schema.Endpoint | None) -> Endpoint:
    """The Endpoint of a decoded one (an empty one for none), checked and built once per distinct fields."""
    fields: _EndpointFields = (None, None, None, None) if received is None else \
        (received.service_name, received.ipv4, received.ipv6, received.port or None)
    endpoint = _endpoints.get(fields)
    if endpoint is None:
        service_name, ipv4, ipv6, port = fields
        if (ipv4 is not None and address_version(ipv4) != 4) or (ipv6 is not None and address_version(ipv6) != 6):
            raise BeyondTheSchema
        if len(_endpoints) >= ENDPOINTS_KEPT:
            _endpoints.clear()
        endpoint = _endpoints[fields] = Endpoint(service_name=service_name, ipv4=ipv4, ipv6=ipv6, port=port)
    return endpoint
