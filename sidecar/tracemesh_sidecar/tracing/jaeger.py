"""Jaeger's native `uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}` header.

Jaeger clients drop leading zeros from ids, so ids of 1-16 (span) or 1-32 (trace) hex digits are
accepted and left-padded; flags bit 1 is "sampled", bit 2 "debug". Read when configured (`extraExtract`),
written under a provider's `headerType` (as Kong's jaeger injector writes it: a missing parent is "0").
"""

from __future__ import annotations

import re
from typing import Final

from tracemesh_sidecar.tracing.wire import MalformedHeader, TraceContext, span_id, trace_id

HEADER: Final = "uber-trace-id"

_UBER_TRACE_ID: Final = re.compile(r"([0-9a-fA-F]{1,32}):([0-9a-fA-F]{1,16}):([0-9a-fA-F]{1,16}):([0-9a-fA-F]{1,2})")
_SAMPLED_FLAG: Final = 0x01
_DEBUG_FLAG: Final = 0x02


def extract(headers: dict[str, str]) -> TraceContext | None:
    value = headers.get(HEADER)
    if value is None:
        return None
    # HTTP clients that URL-encode header values send the colons as %3A.
    match = _UBER_TRACE_ID.fullmatch(value.replace("%3A", ":").replace("%3a", ":"))
    if match is None:
        raise MalformedHeader(f"{HEADER} {value!r} is not trace-id:span-id:parent-span-id:flags in hex")
    raw_trace, raw_span, _parent, raw_flags = match.groups()
    flags = int(raw_flags, 16)
    debug = bool(flags & _DEBUG_FLAG)
    width = 16 if len(raw_trace) <= 16 else 32
    return TraceContext(trace_id(raw_trace.rjust(width, "0")), span_id(raw_span.rjust(16, "0")),
                        debug or bool(flags & _SAMPLED_FLAG), debug)


def inject(out: list[tuple[str, str]], trace: str, span: str, parent: str | None, sampled: bool, debug: bool) -> None:
    flags = (_DEBUG_FLAG | _SAMPLED_FLAG) if debug else (_SAMPLED_FLAG if sampled else 0)
    out.append((HEADER, f"{trace}:{span}:{parent or '0'}:{flags:02x}"))
