"""W3C Trace Context: `traceparent` and `tracestate` (https://www.w3.org/TR/trace-context/).

Stricter than B3 because the spec is: lowercase hex only, version ff is invalid, version 00 has
exactly four fields, and a later version may append fields after a dash.
"""

from __future__ import annotations

import re
from typing import Final

from tracemesh_sidecar.tracing.wire import MalformedHeader, TraceContext, span_id, trace_id

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
HEADERS: Final[tuple[str, ...]] = (TRACEPARENT, TRACESTATE)

_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL)
_SAMPLED_FLAG: Final = 0x01


def extract(headers: dict[str, str]) -> TraceContext | None:
    """`traceparent` (with its `tracestate`), None when absent; MalformedHeader when unusable."""
    value = headers.get(TRACEPARENT)
    if value is None:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        raise MalformedHeader(f"{TRACEPARENT} {value!r} is not version-traceid-parentid-flags in lowercase hex")
    version, raw_trace, raw_span, flags, extra = match.groups()
    if version == "ff":
        raise MalformedHeader(f"{TRACEPARENT} version ff is invalid")
    if version == "00" and extra is not None:
        raise MalformedHeader(f"{TRACEPARENT} version 00 has exactly four fields")
    sampled = bool(int(flags, 16) & _SAMPLED_FLAG)
    return TraceContext(trace_id(raw_trace), span_id(raw_span), sampled, tracestate=headers.get(TRACESTATE))


def inject(out: list[tuple[str, str]], trace: str, span: str, sampled: bool, tracestate: str | None) -> None:
    """Append `traceparent` (a 64-bit trace id left-padded to 32 digits) and any `tracestate`."""
    padded = trace if len(trace) == 32 else trace.rjust(32, "0")
    out.append((TRACEPARENT, f"00-{padded}-{span}-{'01' if sampled else '00'}"))
    if tracestate is not None:
        out.append((TRACESTATE, tracestate))
