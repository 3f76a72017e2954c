import pytest

from tracemesh_sidecar.tracing import b3, wire
from tracemesh_sidecar.tracing.wire import MalformedHeader, TraceContext

T128 = "463ac35c9f6413ad48485a3953bb6124"
T64 = "48485a3953bb6124"
SPAN = "a2fb4a1d1a96d312"
PARENT = "0020000000000001"


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, None),
    ({"x-b3-traceid": T128, "x-b3-spanid": SPAN}, TraceContext(T128, SPAN, None)),
    ({"x-b3-traceid": T64, "x-b3-spanid": SPAN}, TraceContext(T64, SPAN, None)),
    ({"x-b3-traceid": T128, "x-b3-spanid": SPAN, "x-b3-parentspanid": PARENT, "x-b3-sampled": "1"},
     TraceContext(T128, SPAN, True)),
    ({"x-b3-traceid": T128, "x-b3-spanid": SPAN, "x-b3-sampled": "0"}, TraceContext(T128, SPAN, False)),
    ({"x-b3-traceid": T128, "x-b3-spanid": SPAN, "x-b3-sampled": "true"}, TraceContext(T128, SPAN, True)),
    ({"x-b3-traceid": T128, "x-b3-spanid": SPAN, "x-b3-sampled": "false"}, TraceContext(T128, SPAN, False)),
    ({"x-b3-traceid": T128, "x-b3-spanid": SPAN, "x-b3-flags": "1"}, TraceContext(T128, SPAN, True, True)),
    ({"x-b3-traceid": T128, "x-b3-spanid": SPAN, "x-b3-flags": "0"}, TraceContext(T128, SPAN, None, False)),
    # Debug overrides a "not sampled" decision.
    ({"x-b3-traceid": T128, "x-b3-spanid": SPAN, "x-b3-sampled": "0", "x-b3-flags": "1"},
     TraceContext(T128, SPAN, True, True)),
    # Uppercase ids are accepted and lowercased.
    ({"x-b3-traceid": T128.upper(), "x-b3-spanid": SPAN.upper()}, TraceContext(T128, SPAN, None)),
    # A 128-bit id with a zero high half is the 64-bit id.
    ({"x-b3-traceid": "0" * 16 + T64, "x-b3-spanid": SPAN}, TraceContext(T64, SPAN, None)),
    # Sampling-only headers carry a decision without ids.
    ({"x-b3-sampled": "1"}, TraceContext(None, None, True)),
    ({"x-b3-sampled": "0"}, TraceContext(None, None, False)),
    ({"x-b3-flags": "1"}, TraceContext(None, None, True, True)),
])
def test_multi_valid(headers: dict[str, str], expected: TraceContext | None) -> None:
    assert b3.extract_multi(headers) == expected


VALID_MULTI = {"x-b3-traceid": T128, "x-b3-spanid": SPAN, "x-b3-parentspanid": PARENT, "x-b3-sampled": "1"}


@pytest.mark.parametrize("changes", [
    {"x-b3-traceid": "463ac35c9f6413ad48485a3953bb612"},  # 31 digits
    {"x-b3-traceid": "463ac35c9f6413ad4"},  # 17
    {"x-b3-traceid": T64[:15]},
    {"x-b3-traceid": T128 + "0"},
    {"x-b3-traceid": "g" + T128[1:]},  # not hex
    {"x-b3-traceid": "0x" + T128[2:]},
    {"x-b3-traceid": "0" * 32},  # all zeros
    {"x-b3-traceid": "0" * 16},
    {"x-b3-traceid": ""},
    {"x-b3-traceid": f"{T128}, {T128}"},  # repeated header, joined
    {"x-b3-traceid": " " + T128[1:]},
    {"x-b3-spanid": "a2fb4a1d1a96d31"},  # 15
    {"x-b3-spanid": SPAN + SPAN},  # 32: span ids are always 64-bit
    {"x-b3-spanid": "0" * 16},
    {"x-b3-spanid": "z2fb4a1d1a96d312"},
    {"x-b3-spanid": "+2fb4a1d1a96d312"},
    {"x-b3-parentspanid": "0" * 16},
    {"x-b3-parentspanid": "123"},
    {"x-b3-sampled": "2"},
    {"x-b3-sampled": "d"},  # "d" belongs to the single header only
    {"x-b3-sampled": ""},
    {"x-b3-sampled": "yes"},
    {"x-b3-flags": "2"},
    {"x-b3-flags": "debug"},
])
def test_multi_malformed(changes: dict[str, str]) -> None:
    with pytest.raises(MalformedHeader):
        b3.extract_multi({**VALID_MULTI, **changes})


@pytest.mark.parametrize("headers", [
    {"x-b3-traceid": T128},  # span id missing
    {"x-b3-spanid": SPAN},  # trace id missing
    {"x-b3-spanid": SPAN, "x-b3-sampled": "1"},
    {"x-b3-parentspanid": PARENT},  # a parent alone
    {"x-b3-parentspanid": PARENT, "x-b3-sampled": "1"},
    {"x-b3-sampled": "maybe"},
])
def test_multi_incomplete_is_malformed(headers: dict[str, str]) -> None:
    with pytest.raises(MalformedHeader):
        b3.extract_multi(headers)


@pytest.mark.parametrize(("value", "expected"), [
    (f"{T128}-{SPAN}", TraceContext(T128, SPAN, None)),
    (f"{T64}-{SPAN}", TraceContext(T64, SPAN, None)),
    (f"{T128}-{SPAN}-1", TraceContext(T128, SPAN, True)),
    (f"{T128}-{SPAN}-0", TraceContext(T128, SPAN, False)),
    (f"{T128}-{SPAN}-d", TraceContext(T128, SPAN, True, True)),
    (f"{T128}-{SPAN}-1-{PARENT}", TraceContext(T128, SPAN, True)),
    (f"{T128.upper()}-{SPAN.upper()}-1", TraceContext(T128, SPAN, True)),
    ("1", TraceContext(None, None, True)),
    ("0", TraceContext(None, None, False)),
    ("d", TraceContext(None, None, True, True)),
])
def test_single_valid(value: str, expected: TraceContext) -> None:
    assert b3.extract_single({"b3": value}) == expected


def test_single_absent() -> None:
    assert b3.extract_single({"x-b3-sampled": "1"}) is None


@pytest.mark.parametrize("value", [
    "",
    "2",
    "true",
    "D",
    T128,  # ids without a span id
    f"{T128}-",
    f"-{SPAN}",
    f"{T128}-{SPAN}-",
    f"{T128}-{SPAN}-x",
    f"{T128}-{SPAN}-true",
    f"{T128}-{SPAN}-1-",
    f"{T128}-{SPAN}-1-{'0' * 16}",
    f"{T128}-{SPAN}-1-{PARENT}-extra",
    f"{T128[:-1]}-{SPAN}-1",
    f"{'0' * 32}-{SPAN}-1",
    f"{T128}-{'0' * 16}-1",
    f"{T128}-{SPAN[:-1]}-1",
    f"{T128}-q{SPAN[1:]}-1",
    f"{T128} -{SPAN}-1",
])
def test_single_malformed(value: str) -> None:
    with pytest.raises(MalformedHeader):
        b3.extract_single({"b3": value})


@pytest.mark.parametrize(("parent", "sampled", "debug", "expected"), [
    (None, True, False, [("x-b3-traceid", T64), ("x-b3-spanid", SPAN), ("x-b3-sampled", "1")]),
    (PARENT, False, False,
     [("x-b3-traceid", T64), ("x-b3-spanid", SPAN), ("x-b3-parentspanid", PARENT), ("x-b3-sampled", "0")]),
    (PARENT, True, True, [("x-b3-traceid", T64), ("x-b3-spanid", SPAN), ("x-b3-parentspanid", PARENT),
                          ("x-b3-sampled", "1"), ("x-b3-flags", "1")]),
])
def test_inject_multi_keeps_the_trace_id_width(parent: str | None, sampled: bool, debug: bool,
                                               expected: list[tuple[str, str]]) -> None:
    out: list[tuple[str, str]] = []
    b3.inject_multi(out, T64, SPAN, parent, sampled, debug)
    assert out == expected


def test_inject_then_extract_round_trips() -> None:
    out: list[tuple[str, str]] = []
    b3.inject_multi(out, T128, SPAN, PARENT, True, True)
    assert b3.extract_multi(dict(out)) == TraceContext(T128, SPAN, True, True)


@pytest.mark.parametrize("code", range(0x180))
def test_an_id_is_hex_digits_only_whatever_their_case(code: int) -> None:
    """Every character below U+0180 in an id: an ASCII hex digit passes (lowercased), any other is malformed."""
    received = SPAN[:5] + chr(code) + SPAN[6:]
    if chr(code) in "0123456789abcdefABCDEF":
        assert wire.span_id(received) == received.lower()
        assert wire.trace_id(received * 2) == (received * 2).lower()
    else:
        with pytest.raises(MalformedHeader):
            wire.span_id(received)
        with pytest.raises(MalformedHeader):
            wire.trace_id(received * 2)


@pytest.mark.parametrize("received", ["a2fb  4a1d1a96d3", " a2fb4a1d1a96d3 ", "a2fb\t\t4a1d1a96d3", "0xa2fb4a1d1a96d3",
                                      "+a2fb4a1d1a96d31", "a2fb_4a1d1a96d31"])
def test_an_id_with_whitespace_or_a_prefix_is_malformed(received: str) -> None:
    """What int() or bytes.fromhex() would take around or between hex digits is no id."""
    with pytest.raises(MalformedHeader):
        wire.span_id(received)
    with pytest.raises(MalformedHeader):
        wire.trace_id(received + "0123456789abcdef")
