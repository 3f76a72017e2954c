"""A span's attributes read from its bytes (otlp_wire) are what protobuf's accessors read, value for value and type
for type; a span whose attributes include an array or a map is left to the accessors."""

from __future__ import annotations

import math
import random

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from tracemesh_sidecar.spans import otlp
from tracemesh_sidecar.spans.model import AttributeValue
from tracemesh_sidecar.spans.otlp_wire import span_attributes

_SCALARS: list[AnyValue] = [
    AnyValue(), AnyValue(string_value=""), AnyValue(string_value="GET"), AnyValue(string_value="\u00e9t\u00e9 \u2603"),
    AnyValue(bool_value=False), AnyValue(bool_value=True), AnyValue(int_value=0), AnyValue(int_value=1),
    AnyValue(int_value=-1), AnyValue(int_value=2**63 - 1), AnyValue(int_value=-(2**63)), AnyValue(int_value=300),
    AnyValue(double_value=0.0), AnyValue(double_value=-0.0), AnyValue(double_value=1.5),
    AnyValue(double_value=float("inf")), AnyValue(double_value=float("nan")), AnyValue(bytes_value=b""),
    AnyValue(bytes_value=b"\x00\xff"), AnyValue(string_value="x" * 300),
]
_NOT_SCALARS = [AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)])),
                AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="a", value=AnyValue(string_value="b"))]))]


def _same(left: dict[str, AttributeValue], right: dict[str, AttributeValue]) -> bool:
    """Equal keys in the same order, and values equal and of one type (NaN is NaN; -0.0 is not 0.0)."""
    def normal(value: AttributeValue) -> object:
        if isinstance(value, float):
            return (float, "nan") if math.isnan(value) else (float, math.copysign(1, value), value)
        return type(value), value
    return list(left) == list(right) and all(normal(left[key]) == normal(right[key]) for key in left)


def _span(values: list[AnyValue], keys: list[str]) -> OtlpSpan:
    span = OtlpSpan(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, parent_span_id=b"\x03" * 8, name="GET /",
                    kind=OtlpSpan.SPAN_KIND_SERVER, start_time_unix_nano=1, end_time_unix_nano=2**63, flags=0x301)
    span.attributes.extend(KeyValue(key=key, value=value) for key, value in zip(keys, values, strict=True))
    span.events.add(name="event", attributes=[KeyValue(key="inside", value=AnyValue(int_value=5))])
    span.status.code = 2
    return span


@pytest.mark.parametrize("seed", range(200))
def test_random_scalar_attributes_read_as_the_accessors_read_them(seed: int) -> None:
    chooser = random.Random(seed)
    count = chooser.randrange(0, 30)
    keys = [chooser.choice(["a", "http.method", "", "k\u00e9", f"key{chooser.randrange(8)}"]) for _ in range(count)]
    span = _span([chooser.choice(_SCALARS) for _ in range(count)], keys)  # repeated keys too: the last one counts
    read = span_attributes(span.SerializeToString())
    assert read is not None and _same(read, otlp._typed_attributes(span.attributes))


@pytest.mark.parametrize("value", _NOT_SCALARS)
def test_an_array_or_a_map_leaves_the_span_to_the_accessors(value: AnyValue) -> None:
    span = _span([AnyValue(string_value="a"), value], ["first", "second"])
    assert span_attributes(span.SerializeToString()) is None
    [decoded] = otlp._spans_from_request(_request(span))
    assert decoded.otlp is not None and _same(decoded.otlp.attributes, otlp._typed_attributes(span.attributes))
    assert isinstance(decoded.otlp.attributes["second"], str)  # the JSON text of the array or map


def test_unknown_fields_of_a_newer_otlp_are_skipped() -> None:
    span = _span([AnyValue(string_value="GET")], ["http.method"])
    # field 99 of each kind (varint, fixed64, length-delimited, fixed32) in the span, the KeyValue and the AnyValue
    unknown = b"\x98\x06\x01" + b"\x99\x06" + b"\x00" * 8 + b"\x9a\x06\x02ab" + b"\x9d\x06" + b"\x00" * 4
    value = b"\x18\x07" + unknown  # int_value 7, then unknown fields
    late = b"\x0a\x04late" + unknown + b"\x12" + bytes([len(value)]) + value
    data = span.SerializeToString() + unknown + b"\x4a" + bytes([len(late)]) + late
    parsed = OtlpSpan.FromString(data)
    read = span_attributes(parsed.SerializeToString())
    assert read == {"http.method": "GET", "late": 7} and _same(read, otlp._typed_attributes(parsed.attributes))


def _request(span: OtlpSpan) -> object:
    request = otlp.ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(span)
    return request
