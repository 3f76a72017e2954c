import pytest

from tracemesh_sidecar.tracing import jaeger, ot
from tracemesh_sidecar.tracing.wire import MalformedHeader, TraceContext

T128 = "463ac35c9f6413ad48485a3953bb6124"
T64 = "48485a3953bb6124"
SPAN = "a2fb4a1d1a96d312"


@pytest.mark.parametrize(("value", "expected"), [
    (f"{T128}:{SPAN}:0:1", TraceContext(T128, SPAN, True)),
    (f"{T64}:{SPAN}:0:0", TraceContext(T64, SPAN, False)),
    (f"{T128}:{SPAN}:0:3", TraceContext(T128, SPAN, True, True)),
    (f"{T128}:{SPAN}:0:2", TraceContext(T128, SPAN, True, True)),  # debug implies sampled
    (f"{T128}:{SPAN}:{SPAN}:01", TraceContext(T128, SPAN, True)),
    ("abc:def:0:1", TraceContext("0000000000000abc", "0000000000000def", True)),  # leading zeros dropped
    (f"1{T64}:{SPAN}:0:1", TraceContext("000000000000000" + "1" + T64, SPAN, True)),
    (f"{T128.upper()}:{SPAN.upper()}:0:1", TraceContext(T128, SPAN, True)),
    (f"{T128}%3A{SPAN}%3A0%3A1", TraceContext(T128, SPAN, True)),  # URL-encoded colons
    (f"{'0' * 16}{T64}:{SPAN}:0:1", TraceContext(T64, SPAN, True)),
])
def test_jaeger_valid(value: str, expected: TraceContext) -> None:
    assert jaeger.extract({"uber-trace-id": value}) == expected


@pytest.mark.parametrize("value", [
    "",
    f"{T128}:{SPAN}:0",
    f"{T128}:{SPAN}:0:1:1",
    f"{T128}0:{SPAN}:0:1",  # 33 digits
    f"{T128}:{SPAN}0:0:1",  # 17 digits
    f"0:{SPAN}:0:1",  # zero trace id
    f"{T128}:0:0:1",  # zero span id
    f"{T128}:{SPAN}:0:x",
    f"{T128}:{SPAN}:0:100",
    f"{T128}::0:1",
    f"g{T128[1:]}:{SPAN}:0:1",
    f"{T128}-{SPAN}-0-1",
])
def test_jaeger_malformed(value: str) -> None:
    with pytest.raises(MalformedHeader):
        jaeger.extract({"uber-trace-id": value})


def test_jaeger_absent() -> None:
    assert jaeger.extract({"x-b3-sampled": "1"}) is None


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, None),
    ({"ot-tracer-traceid": T64, "ot-tracer-spanid": SPAN}, TraceContext(T64, SPAN, None)),
    ({"ot-tracer-traceid": T128, "ot-tracer-spanid": SPAN, "ot-tracer-sampled": "true"},
     TraceContext(T128, SPAN, True)),
    ({"ot-tracer-traceid": T128, "ot-tracer-spanid": SPAN, "ot-tracer-sampled": "False"},
     TraceContext(T128, SPAN, False)),
    ({"ot-tracer-traceid": T128, "ot-tracer-spanid": SPAN, "ot-tracer-sampled": "1"},
     TraceContext(T128, SPAN, True)),
    ({"ot-tracer-sampled": "true"}, TraceContext(None, None, True)),
])
def test_ot_valid(headers: dict[str, str], expected: TraceContext | None) -> None:
    assert ot.extract(headers) == expected


@pytest.mark.parametrize("headers", [
    {"ot-tracer-traceid": T128},
    {"ot-tracer-spanid": SPAN},
    {"ot-tracer-traceid": T128[:-1], "ot-tracer-spanid": SPAN},
    {"ot-tracer-traceid": "0" * 16, "ot-tracer-spanid": SPAN},
    {"ot-tracer-traceid": T128, "ot-tracer-spanid": "0" * 16},
    {"ot-tracer-traceid": T128, "ot-tracer-spanid": SPAN, "ot-tracer-sampled": "yes"},
    {"ot-tracer-sampled": "2"},
])
def test_ot_malformed(headers: dict[str, str]) -> None:
    with pytest.raises(MalformedHeader):
        ot.extract(headers)
