import pytest

from tracemesh_sidecar.tracing import w3c
from tracemesh_sidecar.tracing.wire import MalformedHeader, TraceContext

T128 = "4bf92f3577b34da6a3ce929d0e0e4736"
T64 = "a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, None),
    ({"tracestate": "congo=t61rcWkgMzE"}, None),  # tracestate means nothing without traceparent
    ({"traceparent": f"00-{T128}-{SPAN}-01"}, TraceContext(T128, SPAN, True)),
    ({"traceparent": f"00-{T128}-{SPAN}-00"}, TraceContext(T128, SPAN, False)),
    # Flag bits other than "sampled" are ignored, as the spec asks.
    ({"traceparent": f"00-{T128}-{SPAN}-03"}, TraceContext(T128, SPAN, True)),
    ({"traceparent": f"00-{T128}-{SPAN}-fe"}, TraceContext(T128, SPAN, False)),
    # A 64-bit id is carried left-padded; it is read back as the 64-bit id.
    ({"traceparent": f"00-{'0' * 16}{T64}-{SPAN}-01"}, TraceContext(T64, SPAN, True)),
    ({"traceparent": f"00-{T128}-{SPAN}-01", "tracestate": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
     TraceContext(T128, SPAN, True, tracestate="rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")),
    # A future version may append fields; its first four are read as version 00's.
    ({"traceparent": f"01-{T128}-{SPAN}-01"}, TraceContext(T128, SPAN, True)),
    ({"traceparent": f"cc-{T128}-{SPAN}-01-what-the-future-holds"}, TraceContext(T128, SPAN, True)),
])
def test_valid(headers: dict[str, str], expected: TraceContext | None) -> None:
    assert w3c.extract(headers) == expected


@pytest.mark.parametrize("value", [
    "",
    f"ff-{T128}-{SPAN}-01",  # version ff is invalid
    f"00-{T128}-{SPAN}-01-extra",  # version 00 has exactly four fields
    f"00-{T128}-{SPAN}-01-",
    f"00-{T128.upper()}-{SPAN}-01",  # uppercase hex
    f"00-{T128}-{SPAN.upper()}-01",
    f"0A-{T128}-{SPAN}-01",
    f"00-{T128}-{SPAN}-0A",
    f"00-{T64}-{SPAN}-01",  # W3C trace ids are always 32 digits
    f"00-{T128}0-{SPAN}-01",
    f"00-{T128}-{SPAN}0-01",
    f"00-{T128}-{SPAN[:-1]}-01",
    f"00-{'0' * 32}-{SPAN}-01",  # all-zero ids
    f"00-{T128}-{'0' * 16}-01",
    f"00-{T128}-{SPAN}-1",  # bad flags
    f"00-{T128}-{SPAN}-001",
    f"00-{T128}-{SPAN}-zz",
    f"0-{T128}-{SPAN}-01",
    f"000-{T128}-{SPAN}-01",
    f"00_{T128}_{SPAN}_01",
    f"00-{T128}-{SPAN}",
    f" 00-{T128}-{SPAN}-01",
    f"00-{T128}-{SPAN}-01\n",
    f"00-{T128}-{SPAN}-01, 00-{T128}-{SPAN}-01",  # repeated header, joined
    f"01-{T128}-{SPAN}-01x",  # a later version's extra fields start with a dash
])
def test_malformed(value: str) -> None:
    with pytest.raises(MalformedHeader):
        w3c.extract({"traceparent": value, "tracestate": "a=b"})


@pytest.mark.parametrize(("trace", "sampled", "tracestate", "expected"), [
    (T128, True, None, [("traceparent", f"00-{T128}-{SPAN}-01")]),
    (T128, False, None, [("traceparent", f"00-{T128}-{SPAN}-00")]),
    (T64, True, None, [("traceparent", f"00-{'0' * 16}{T64}-{SPAN}-01")]),
    (T128, True, "a=b,c=d", [("traceparent", f"00-{T128}-{SPAN}-01"), ("tracestate", "a=b,c=d")]),
])
def test_inject(trace: str, sampled: bool, tracestate: str | None, expected: list[tuple[str, str]]) -> None:
    out: list[tuple[str, str]] = []
    w3c.inject(out, trace, SPAN, sampled, tracestate)
    assert out == expected
    assert w3c.extract(dict(out)) == TraceContext(trace, SPAN, sampled, tracestate=tracestate)
