"""The typed msgspec schema of Zipkin v2 JSON's ListOfSpans (zipkin2-api.yaml), for zipkin_v2_json.

Apart from zipkin_v2_json because mypyc compiles that module, and msgspec reads a Struct's field types from its
class annotations, which a compiled module does not keep as msgspec expects (every `kind` failed to decode,
and each batch went to the slower codec: tests/collector/test_zipkin_v2_json.py now checks the schema alone).
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


class Endpoint(msgspec.Struct, rename="camel", gc=False):
    service_name: str | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    port: _Port | None = None


class Annotation(msgspec.Struct, gc=False):
    timestamp: _Microseconds
    value: str


class Span(msgspec.Struct, rename="camel", gc=False):
    """A span of zipkin2-api.yaml's ListOfSpans, each field as decode_spans allows it."""

    trace_id: _TraceId
    id: _SpanId
    parent_id: _SpanId | None = None
    name: str | None = None
    kind: Literal["CLIENT", "SERVER", "PRODUCER", "CONSUMER"] | None = None
    timestamp: _Microseconds | None = None
    duration: _Microseconds | None = None
    local_endpoint: Endpoint | None = None
    remote_endpoint: Endpoint | None = None
    tags: dict[str, str] | None = None
    annotations: list[Annotation] | None = None
    debug: bool | None = None
    shared: bool | None = None


LIST_OF_SPANS = msgspec.json.Decoder(list[Span])
