"""A provider's `headerType` (Kong's Zipkin plugin header_type) against every incoming format, malformed and mixed.

Kong's rules (kong/observability/tracing/propagation/init.lua get_plugin_params): `preserve` reads every format
and writes back the one that came in, or `default_header_type`; `ignore` reads none and writes the default;
a fixed format reads every format and writes itself plus the one that came in (or the default). tracemesh writes
back every well-formed format that came in, and counts a request whose formats disagree. Without `headerType`
the provider behaves as Istio's (the tracer's own formats): the last rows.
"""

from __future__ import annotations

from typing import Any

import pytest
from trace_hop_helpers import config, forward, outbound_request, provider, response

from tracemesh_sidecar.stats import Stats
from tracemesh_sidecar.tracing import HopTracer
from tracemesh_sidecar.tracing.context import extract
from tracemesh_sidecar.tracing.header_modes import MISMATCH_TOTAL

T = "463ac35c9f6413ad48485a3953bb6124"
T2 = "0af7651916cd43dd8448eb211c80319c"
S = "a2fb4a1d1a96d312"
INCOMING: dict[str, dict[str, str]] = {
    "none": {},
    "b3": {"x-b3-traceid": T, "x-b3-spanid": S, "x-b3-sampled": "1"},
    "b3_single": {"b3": f"{T}-{S}-1"},
    "w3c": {"traceparent": f"00-{T}-{S}-01"},
    "jaeger": {"uber-trace-id": f"{T}:{S}:0:1"},
    "ot": {"ot-tracer-traceid": T, "ot-tracer-spanid": S, "ot-tracer-sampled": "true"},
    "malformed jaeger": {"uber-trace-id": "not:a:trace:id"},
    "malformed w3c": {"traceparent": f"00-{T.upper()}-{S}-01"},
    "malformed b3 + jaeger": {"x-b3-traceid": "xyz", "x-b3-spanid": S, "uber-trace-id": f"{T}:{S}:0:1"},
    "mixed b3 + w3c, one trace": {"x-b3-traceid": T, "x-b3-spanid": S, "traceparent": f"00-{T}-{S}-01"},
    "mixed jaeger + ot, two traces": {"uber-trace-id": f"{T}:{S}:0:1", "ot-tracer-traceid": T2,
                                      "ot-tracer-spanid": S},
}
# The header that shows a format was written, by format name.
MARKS = {"b3": "x-b3-traceid", "b3_single": "b3", "w3c": "traceparent", "jaeger": "uber-trace-id",
         "ot": "ot-tracer-traceid"}
WELL_FORMED = {"none": (), "b3": ("b3",), "b3_single": ("b3_single",), "w3c": ("w3c",), "jaeger": ("jaeger",),
               "ot": ("ot",), "malformed jaeger": (), "malformed w3c": (), "malformed b3 + jaeger": ("jaeger",),
               "mixed b3 + w3c, one trace": ("b3", "w3c"), "mixed jaeger + ot, two traces": ("jaeger", "ot")}
FIXED = {"b3": "b3", "b3-single": "b3_single", "w3c": "w3c", "jaeger": "jaeger", "ot": "ot"}


def expected(mode: str, incoming: str) -> tuple[set[str], bool, bool]:
    """(formats written, continues the incoming trace, counted as a mismatch), by Kong's rules as stated above."""
    came = set(WELL_FORMED[incoming])
    if mode == "ignore":
        return {"b3"}, False, False
    if mode == "preserve":
        return came or {"b3"}, bool(came), len(came) > 1
    fixed = FIXED[mode]
    return {fixed} | (came or {"b3"}), bool(came), bool(came) and came | {fixed} != {fixed}


CASES = [(mode, incoming) for mode in ("preserve", "ignore", *FIXED) for incoming in INCOMING]


def run(settings: dict[str, Any], headers: dict[str, str]) -> tuple[Any, Any, dict[str, str], Stats]:
    stats = Stats()
    tracer = HopTracer(config(provider(**settings)), "outbound", stats)
    hop = tracer.start(outbound_request(headers), 0)
    span = hop.finish(response(), 10)
    return hop, span, forward(outbound_request(headers).headers, hop), stats


@pytest.mark.parametrize(("mode", "incoming"), CASES, ids=[f"{m}/{i}" for m, i in CASES])
def test_header_mode_against_incoming_format(mode: str, incoming: str) -> None:
    writes, continues, mismatch = expected(mode, incoming)
    hop, span, forwarded, stats = run({"header_type": mode}, INCOMING[incoming])
    written = {name for name, header in MARKS.items() if header in dict(hop.headers_to_set)}
    assert written == writes
    assert (span.trace_id == T) == continues
    assert span.parent_id == (S if continues else None)
    assert stats.get(MISMATCH_TOTAL) == int(mismatch)
    # Every format on the forwarded request names this hop's span in this trace (no stale header survives)...
    for name in writes:
        context = extract(forwarded, (name,)).context
        assert context is not None and (context.trace_id, context.span_id) == (span.trace_id, span.id), name
    # ...and a format neither written nor read is passed untouched (ignore reads nothing).
    if mode == "ignore":
        for name, header in MARKS.items():
            if name not in writes and header in INCOMING[incoming]:
                assert forwarded[header] == INCOMING[incoming][header]
    else:
        assert {name for name, header in MARKS.items() if header in forwarded} == writes


@pytest.mark.parametrize("default", ["b3", "b3-single", "w3c", "jaeger", "ot"])
def test_preserve_writes_the_default_header_type_when_nothing_came(default: str) -> None:
    hop, _, _, _ = run({"header_type": "preserve", "default_header_type": default}, {})
    assert {name for name, header in MARKS.items() if header in dict(hop.headers_to_set)} == {FIXED[default]}


@pytest.mark.parametrize(("incoming", "parent"), [
    ("none", None), ("b3", S), ("b3_single", S), ("w3c", None), ("jaeger", None), ("ot", None),
    ("malformed b3 + jaeger", None), ("mixed b3 + w3c, one trace", S),
])
def test_without_header_type_the_zipkin_tracer_is_istios(incoming: str, parent: str | None) -> None:
    """Envoy's zipkin tracer (USE_B3): reads B3 multi and single, writes B3 multi, passes the rest."""
    hop, span, forwarded, stats = run({}, INCOMING[incoming])
    assert span.parent_id == parent
    assert {name for name, header in MARKS.items() if header in dict(hop.headers_to_set)} == {"b3"}
    for header in ("traceparent", "uber-trace-id", "ot-tracer-traceid"):
        assert forwarded.get(header) == INCOMING[incoming].get(header)
    assert stats.get(MISMATCH_TOTAL) == 0


def test_provider_extra_extract_reads_jaeger_without_writing_it() -> None:
    """`extraExtract` on the MeshConfig provider: the same as the proxy document's tracing.extraExtract."""
    _, span, forwarded, _ = run({"extra_extract": ("jaeger",)}, INCOMING["jaeger"])
    assert (span.trace_id, span.parent_id) == (T, S)
    assert forwarded["uber-trace-id"] == INCOMING["jaeger"]["uber-trace-id"]
    assert forwarded["x-b3-traceid"] == T


def test_written_formats_carry_parent_sampling_and_debug() -> None:
    _, span, forwarded, _ = run({"header_type": "preserve"},
                                  {"b3": f"{T}-{S}-d", "uber-trace-id": f"{T}:{S}:0:1", "ot-tracer-traceid": T,
                                   "ot-tracer-spanid": S})
    assert forwarded["b3"] == f"{T}-{span.id}-d-{S}"
    assert forwarded["uber-trace-id"] == f"{T}:{span.id}:{S}:03"
    assert (forwarded["ot-tracer-spanid"], forwarded["ot-tracer-sampled"]) == (span.id, "1")


def test_disabled_context_propagation_outranks_the_header_type() -> None:
    stats = Stats()
    tracer = HopTracer(config(provider(header_type="jaeger"), disable_context_propagation=True), "outbound", stats)
    hop = tracer.start(outbound_request(INCOMING["b3"]), 0)
    assert not [name for name, _ in hop.headers_to_set if name in MARKS.values()]
    assert forward(INCOMING["b3"], hop) == {**INCOMING["b3"], **dict(hop.headers_to_set)}
