"""The OpenTracing basic tracer's `ot-tracer-traceid`, `ot-tracer-spanid`, `ot-tracer-sampled` headers.

Read when configured (`extraExtract`), written under a provider's `headerType` as Kong's ot injector
writes them (sampled as "1"/"0"; the basic tracer's "true"/"false" is read too).
"""

from __future__ import annotations

from typing import Final

from tracemesh_sidecar.tracing.wire import MalformedHeader, TraceContext, span_id, trace_id

TRACE_ID: Final = "ot-tracer-traceid"
SPAN_ID: Final = "ot-tracer-spanid"
SAMPLED: Final = "ot-tracer-sampled"
HEADERS: Final[tuple[str, ...]] = (TRACE_ID, SPAN_ID, SAMPLED)

_SAMPLED: Final = {"true": True, "false": False, "1": True, "0": False}


def extract(headers: dict[str, str]) -> TraceContext | None:
    raw_trace = headers.get(TRACE_ID)
    raw_span = headers.get(SPAN_ID)
    raw_sampled = headers.get(SAMPLED)
    sampled = None
    if raw_sampled is not None:
        sampled = _SAMPLED.get(raw_sampled.lower())
        if sampled is None:
            raise MalformedHeader(f"{SAMPLED} is {raw_sampled!r}; expected true or false")
    if raw_trace is None and raw_span is None:
        return None if sampled is None else TraceContext(None, None, sampled)
    if raw_trace is None or raw_span is None:
        raise MalformedHeader(f"{TRACE_ID} and {SPAN_ID} must come together")
    return TraceContext(trace_id(raw_trace), span_id(raw_span), sampled)


def inject(out: list[tuple[str, str]], trace: str, span: str, parent: str | None, sampled: bool, debug: bool) -> None:
    """OT's headers carry no parent and no debug flag: `parent` and `debug` are accepted for the writer's shape."""
    out.append((TRACE_ID, trace))
    out.append((SPAN_ID, span))
    out.append((SAMPLED, "1" if sampled else "0"))
