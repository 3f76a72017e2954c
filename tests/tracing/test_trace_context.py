import random

import pytest

from tracemesh_sidecar.tracing.context import TRACE_HEADERS, ExtractResult, extract
from tracemesh_sidecar.tracing.wire import TraceContext

A = "463ac35c9f6413ad48485a3953bb6124"
B = "4bf92f3577b34da6a3ce929d0e0e4736"
C = "1111111111111111aaaaaaaaaaaaaaaa"
D = "2222222222222222bbbbbbbbbbbbbbbb"
E = "3333333333333333cccccccccccccccc"
SPAN_A = "a2fb4a1d1a96d312"
SPAN_B = "00f067aa0ba902b7"
SPAN_C = "1234567890abcdef"
SPAN_D = "fedcba0987654321"
SPAN_E = "0123456789abcdef"

MULTI_A = {"x-b3-traceid": A, "x-b3-spanid": SPAN_A, "x-b3-sampled": "1"}
SINGLE_B = {"b3": f"{B}-{SPAN_B}-0"}
W3C_C = {"traceparent": f"00-{C}-{SPAN_C}-01", "tracestate": "k=v"}
JAEGER_D = {"uber-trace-id": f"{D}:{SPAN_D}:0:1"}
OT_E = {"ot-tracer-traceid": E, "ot-tracer-spanid": SPAN_E, "ot-tracer-sampled": "true"}
ALL = {**MULTI_A, **SINGLE_B, **W3C_C, **JAEGER_D, **OT_E}
# What a zipkin provider under USE_B3_WITH_W3C_PROPAGATION reads; Jaeger and OT come on top when configured.
B3_AND_W3C = ("b3", "b3_single", "w3c")


@pytest.mark.parametrize(("headers", "extra", "expected"), [
    (ALL, (), TraceContext(A, SPAN_A, True)),
    ({**SINGLE_B, **W3C_C, **JAEGER_D, **OT_E}, (), TraceContext(B, SPAN_B, False)),
    ({**W3C_C, **JAEGER_D, **OT_E}, (), TraceContext(C, SPAN_C, True, tracestate="k=v")),
    # Jaeger and OT are read only when configured, and after the provider's formats.
    ({**JAEGER_D, **OT_E}, (), None),
    ({**JAEGER_D, **OT_E}, ("jaeger",), TraceContext(D, SPAN_D, True)),
    ({**JAEGER_D, **OT_E}, ("ot",), TraceContext(E, SPAN_E, True)),
    ({**JAEGER_D, **OT_E}, ("ot", "jaeger"), TraceContext(D, SPAN_D, True)),
    ({**W3C_C, **JAEGER_D}, ("jaeger",), TraceContext(C, SPAN_C, True, tracestate="k=v")),
    ({**W3C_C, **JAEGER_D}, ("unknown",), TraceContext(C, SPAN_C, True, tracestate="k=v")),
])
def test_precedence(headers: dict[str, str], extra: tuple[str, ...], expected: TraceContext | None) -> None:
    assert extract(headers, B3_AND_W3C + extra) == ExtractResult(expected, ())


@pytest.mark.parametrize(("headers", "expected"), [
    # A malformed format is skipped and named; the next one is read.
    ({"x-b3-traceid": "bad", "x-b3-spanid": SPAN_A, **SINGLE_B},
     ExtractResult(TraceContext(B, SPAN_B, False), ("b3",))),
    ({"x-b3-traceid": A, **SINGLE_B}, ExtractResult(TraceContext(B, SPAN_B, False), ("b3",))),
    ({"b3": "nonsense", **W3C_C}, ExtractResult(TraceContext(C, SPAN_C, True, tracestate="k=v"), ("b3_single",))),
    ({"x-b3-sampled": "x", "b3": "x", "traceparent": "x"}, ExtractResult(None, ("b3", "b3_single", "w3c"))),
    ({**MULTI_A, "traceparent": "x"}, ExtractResult(TraceContext(A, SPAN_A, True), ("w3c",))),
    ({"uber-trace-id": "x", "ot-tracer-traceid": "x"}, ExtractResult(None, ())),  # not configured: not read
])
def test_malformed_formats_are_absent_and_named(headers: dict[str, str], expected: ExtractResult) -> None:
    assert extract(headers, B3_AND_W3C) == expected


@pytest.mark.parametrize(("formats", "expected"), [
    (("b3", "b3_single"), TraceContext(A, SPAN_A, True)),
    (("w3c",), TraceContext(C, SPAN_C, True, tracestate="k=v")),
    (("b3_single",), TraceContext(B, SPAN_B, False)),
    ((), None),
])
def test_only_the_formats_asked_for_are_read(formats: tuple[str, ...], expected: TraceContext | None) -> None:
    assert extract(ALL, formats) == ExtractResult(expected, ())


def test_malformed_optional_formats_are_named_when_configured() -> None:
    headers = {"uber-trace-id": "x", "ot-tracer-traceid": "x"}
    assert extract(headers, ("jaeger", "ot")) == ExtractResult(None, ("jaeger", "ot"))


@pytest.mark.parametrize(("headers", "expected"), [
    # Sampling-only B3 headers give the decision; a later format gives the ids.
    ({"x-b3-sampled": "0", **W3C_C}, TraceContext(C, SPAN_C, False, tracestate="k=v")),
    ({"x-b3-flags": "1", **SINGLE_B}, TraceContext(B, SPAN_B, True, True)),
    ({"b3": "d", **W3C_C}, TraceContext(C, SPAN_C, True, True, tracestate="k=v")),
    ({"b3": "0"}, TraceContext(None, None, False)),
    ({"x-b3-sampled": "1", "b3": "0"}, TraceContext(None, None, True)),
    # Ids without a decision take the decision of a later header about the same trace ...
    ({"x-b3-traceid": A, "x-b3-spanid": SPAN_A, "b3": "0"}, TraceContext(A, SPAN_A, False)),
    ({"x-b3-traceid": A, "x-b3-spanid": SPAN_A, "b3": f"{A}-{SPAN_A}-1"}, TraceContext(A, SPAN_A, True)),
    ({"x-b3-traceid": C, "x-b3-spanid": SPAN_C, "traceparent": f"00-{C}-{SPAN_B}-01", "tracestate": "k=v"},
     TraceContext(C, SPAN_C, True, tracestate="k=v")),
    # ... but never from a header naming another trace (a stale leftover), nor its tracestate.
    ({"x-b3-traceid": A, "x-b3-spanid": SPAN_A, "b3": f"{B}-{SPAN_B}-1"}, TraceContext(A, SPAN_A, None)),
    ({"x-b3-traceid": A, "x-b3-spanid": SPAN_A, **W3C_C}, TraceContext(A, SPAN_A, None)),
    ({**MULTI_A, **W3C_C}, TraceContext(A, SPAN_A, True)),
    # The same 64-bit trace written 16-wide by B3 and padded by W3C is one trace.
    ({"x-b3-traceid": A[16:], "x-b3-spanid": SPAN_A, "traceparent": f"00-{'0' * 16}{A[16:]}-{SPAN_A}-01",
      "tracestate": "k=v"}, TraceContext(A[16:], SPAN_A, True, tracestate="k=v")),
])
def test_merging_ids_and_decisions(headers: dict[str, str], expected: TraceContext) -> None:
    assert extract(headers) == ExtractResult(expected, ())


def test_no_trace_headers() -> None:
    assert extract({"host": "reviews:9080", "x-request-id": "r"}) == ExtractResult(None, ())


def test_trace_headers_list_every_format() -> None:
    assert frozenset({
        "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3",
        "traceparent", "tracestate", "uber-trace-id", "ot-tracer-traceid", "ot-tracer-spanid", "ot-tracer-sampled",
    }) == TRACE_HEADERS


def _mutations(valid: str, rng: random.Random) -> str:
    chars = list(valid)
    for _ in range(rng.randint(1, 3)):
        action = rng.randrange(3)
        position = rng.randrange(len(chars) + 1)
        if action == 0 and chars:
            del chars[min(position, len(chars) - 1)]
        elif action == 1:
            chars.insert(position, rng.choice("0123456789abcdefABCDEF-:,; \x00é"))
        elif chars:
            chars[min(position, len(chars) - 1)] = rng.choice("0Zz-:\t")
    return "".join(chars)


def test_mutated_headers_never_raise() -> None:
    # A seeded, bounded fuzz: whatever the bytes, extraction answers and names what it skipped.
    rng = random.Random(20261121)
    for _ in range(3000):
        headers = {name: _mutations(value, rng) for name, value in ALL.items() if rng.random() < 0.5}
        result = extract(headers, ("jaeger", "ot"))
        assert set(result.malformed) <= {"b3", "b3_single", "w3c", "jaeger", "ot"}
        if result.context is not None and result.context.trace_id is not None:
            assert len(result.context.trace_id) in (16, 32)
            assert result.context.span_id is not None and len(result.context.span_id) == 16
            assert result.context.trace_id == result.context.trace_id.lower()
