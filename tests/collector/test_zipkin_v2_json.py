"""The collector's Zipkin v2 JSON ingest (msgspec) takes what the sidecar's codec takes, as the same spans, and
refuses what it refuses with the codec's error naming the field."""

from __future__ import annotations

import copy
import json
from dataclasses import fields
from typing import Any

import pytest
from collector_samples import NOW_US, bookinfo_trace, trace_id

from tracemesh_collector import zipkin_v2_json
from tracemesh_sidecar.spans import zipkin_json
from tracemesh_sidecar.spans.errors import SpanDecodeError
from tracemesh_sidecar.spans.model import Annotation, Endpoint, Span

_GOOD = zipkin_json.span_to_zipkin_dict(bookinfo_trace(trace_id(1), NOW_US)[1])
_GOOD["annotations"] = [{"timestamp": NOW_US, "value": "ws"}]
_GOOD["debug"], _GOOD["shared"] = True, False

# every field of a span (zipkin2-api.yaml's Span, Endpoint and Annotation), as a path into the document
_FIELDS: list[tuple[str | int, ...]] = [
    *((key,) for key in ("traceId", "id", "parentId", "name", "kind", "timestamp", "duration", "localEndpoint",
                         "remoteEndpoint", "tags", "annotations", "debug", "shared")),
    *((side, key) for side in ("localEndpoint", "remoteEndpoint") for key in ("serviceName", "ipv4", "ipv6", "port")),
    ("tags", "http.status_code"),
    ("annotations", 0),
    ("annotations", 0, "timestamp"),
    ("annotations", 0, "value"),
]
# JSON values of every type, and the edges of each field's rule
_VALUES: list[Any] = [
    None, 0, -1, 1, 1.0, 1.5, 65535, 65536, 2**63, 2**64, 2**70, -(2**70), True, False, "", "x", "0" * 16, "0" * 32,
    "0000000000000001", "A" * 16, "abcdef0123456789" * 2, "0" * 16 + "abcdef0123456789", "abcdef012345678",
    "g" * 16, "0123456789abcdeg", "g123456789abcdef", "01234567 9abcdef", "0123456789ABCDEf", "ab" * 12,
    "CLIENT", "client", "PRODUCER", "10.0.0.1", "10.0.0.300", "2001:db8::c001", "::g", "\u0000",
    "\u00e9t\u00e9", [], [1], {}, {"a": "b"}, {"a": 1}, {"timestamp": 1, "value": "v"}, {"value": "v"},
    [{"timestamp": 1, "value": "v"}], [{"value": "v"}], [{"timestamp": 1}], [None],
]
_ABSENT = object()


def _changed(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(_GOOD)
    parent: Any = document
    for step in path[:-1]:
        parent = parent[step]
    if value is _ABSENT and isinstance(parent, list):
        del parent[path[-1]]
    elif value is _ABSENT:
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value
    return document


def _outcome(decode: Any, body: bytes) -> list[Span] | str:
    try:
        spans: list[Span] = decode(body)
    except SpanDecodeError as error:
        return f"refused: {error}"
    return spans


@pytest.mark.parametrize("path", _FIELDS, ids=lambda path: ".".join(map(str, path)))
def test_every_value_of_every_field_decodes_as_the_sidecar_codec_decodes_it(path: tuple[str | int, ...]) -> None:
    for value in [*_VALUES, _ABSENT]:
        body = json.dumps([_GOOD, _changed(path, value)]).encode()
        expected = _outcome(zipkin_json.decode_spans, body)
        assert _outcome(zipkin_v2_json.decode_spans, body) == expected, (path, value)
        if not isinstance(expected, str):
            for got, want in zip(zipkin_v2_json.decode_spans(body), expected, strict=True):
                assert [type(getattr(got, field.name)) for field in fields(Span)] == \
                       [type(getattr(want, field.name)) for field in fields(Span)], (path, value)


@pytest.mark.parametrize("body", [
    b"", b"[]", b"{}", b"null", b"[1]", b"[null]", b"[{", b"\xff\xfe", b'["x"]', b" [ ] ",
    # a key twice: the last one counts, as in orjson
    b'[{"traceId": "0000000000000000", "traceId": "4e441824ec2b6a44", "id": "0000000000000001"}]',
    b'[{"traceId": "4e441824ec2b6a44", "id": "0000000000000001", "tags": {"a": "1", "a": "2"}}]',
    b'[{"traceId": "4e441824ec2b6a44", "id": "0000000000000001", "name": "\\ud800"}]',
])
def test_bodies_decode_as_the_sidecar_codec_decodes_them(body: bytes) -> None:
    assert _outcome(zipkin_v2_json.decode_spans, body) == _outcome(zipkin_json.decode_spans, body)


def test_a_mesh_batch_decodes_without_the_codec() -> None:
    """The schema alone takes a mesh batch, in the compiled build too (where its structs once refused every kind,
    and the fallback hid it: a patched codec is not what a compiled module calls, so this calls the schema)."""
    spans = [*bookinfo_trace(trace_id(2), NOW_US), *bookinfo_trace("00000000000000004e441824ec2b6a44", NOW_US)]
    spans[0].annotations = [Annotation(NOW_US, "ws")]
    body = zipkin_json.encode_spans(spans)
    decoded = zipkin_v2_json.schema_decode(body)
    assert decoded == zipkin_json.decode_spans(body)
    assert decoded == spans[:7] + [_with_trace_id(span, "4e441824ec2b6a44") for span in spans[7:]]


def _with_trace_id(span: Span, trace: str) -> Span:
    copied = copy.copy(span)
    copied.trace_id = trace
    return copied


def test_spans_naming_the_same_endpoint_share_one_and_endless_endpoints_keep_the_cache_bounded() -> None:
    """Endpoints are built once per (service, address, port), and a client sending ever new ones (here one
    address each) neither grows the decoder's cache past ENDPOINTS_KEPT nor gets a wrong endpoint back."""
    spans = bookinfo_trace(trace_id(3), NOW_US)
    decoded = zipkin_v2_json.schema_decode(zipkin_json.encode_spans(spans + spans))
    assert decoded[0].local_endpoint is decoded[len(spans)].local_endpoint
    addresses = [f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"
                 for number in range(zipkin_v2_json.ENDPOINTS_KEPT + 100)]
    many = [Span(trace_id=trace_id(4), id=f"{number + 1:016x}", name="get", kind="SERVER", timestamp=NOW_US,
                 duration=1, local_endpoint=Endpoint("svc", address)) for number, address in enumerate(addresses)]
    assert zipkin_v2_json.schema_decode(zipkin_json.encode_spans(many)) == many
    assert len(zipkin_v2_json._endpoints) <= zipkin_v2_json.ENDPOINTS_KEPT
