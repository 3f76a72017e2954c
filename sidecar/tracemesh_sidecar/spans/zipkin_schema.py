"""Zipkin v2 JSON's ListOfSpans (zipkin2-api.yaml) as msgspec Structs: the collector decodes by it
(tracemesh_collector/zipkin_v2_json.py), the sidecar's codec encodes by it (zipkin_json.encode_spans).

Apart from the modules that use it because mypyc compiles those, and msgspec reads a Struct's field types from its
class annotations, which a compiled module does not keep as msgspec expects (every `kind` failed to decode,
and each batch went to the slower codec: tests/collector/test_zipkin_v2_json.py now checks the schema alone).
Encoding leaves out a field at its default (None), as Zipkin's writer leaves out what has no value; the fields
are in the order Zipkin's writer puts them (keyword-only, so that required ones may follow optional ones).
Pure.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

# Ids bounded in length only: that they are hex is checked by zipkin_v2_json (a regular expression per id was
# about a twentieth of a compiled collector's Zipkin ingest, py-spy --native)
_SpanId = Annotated[str, msgspec.Meta(min_length=16, max_length=16)]
_TraceId = Annotated[str, msgspec.Meta(min_length=16, max_length=32)]
# orjson reads an integer past 64 bits as a float, which decode_spans refuses; msgspec bounds fit 63 bits, and
# decode_spans takes the 64th (orjson reads it as an integer)
_Microseconds = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class Endpoint(msgspec.Struct, rename="camel", gc=False, omit_defaults=True):
    service_name: str | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    port: _Port | None = None


class Annotation(msgspec.Struct, gc=False):
    timestamp: _Microseconds
    value: str


class Span(msgspec.Struct, rename="camel", gc=False, omit_defaults=True, kw_only=True):
    """A span of zipkin2-api.yaml's ListOfSpans, each field as decode_spans allows it."""

    trace_id: _TraceId
    parent_id: _SpanId | None = None
    id: _SpanId
    kind: Literal["CLIENT", "SERVER", "PRODUCER", "CONSUMER"] | None = None
    name: str | None = None
    timestamp: _Microseconds | None = None
    duration: _Microseconds | None = None
    local_endpoint: Endpoint | None = None
    remote_endpoint: Endpoint | None = None
    annotations: list[Annotation] | None = None
    tags: dict[str, str] | None = None
    debug: bool | None = None
    shared: bool | None = None


LIST_OF_SPANS = msgspec.json.Decoder(list[Span])
