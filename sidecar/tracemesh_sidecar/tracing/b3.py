"""Zipkin B3 propagation: the multi-header form (`x-b3-*`) and the single `b3` header.

https://github.com/openzipkin/b3-propagation. Ids are accepted in either case (Zipkin's own
parsers do) and passed on lowercase; a 64-bit trace id stays 16 characters on the wire.
"""

from __future__ import annotations

from typing import Final

from tracemesh_sidecar.tracing.wire import MalformedHeader, TraceContext, span_id, trace_id

TRACE_ID: Final = "x-b3-traceid"
SPAN_ID: Final = "x-b3-spanid"
PARENT_SPAN_ID: Final = "x-b3-parentspanid"
SAMPLED: Final = "x-b3-sampled"
FLAGS: Final = "x-b3-flags"
MULTI_HEADERS: Final[tuple[str, ...]] = (TRACE_ID, SPAN_ID, PARENT_SPAN_ID, SAMPLED, FLAGS)
SINGLE: Final = "b3"

# "true"/"false" are what early Zipkin clients sent; the spec's values are "1"/"0".
_MULTI_SAMPLED: Final = {"1": True, "0": False, "true": True, "false": False}
_MULTI_DEBUG: Final = {"1": True, "0": False}
_SINGLE_SAMPLED: Final = {"1": True, "0": False}
_SINGLE_DEBUG: Final = "d"


def extract_multi(headers: dict[str, str]) -> TraceContext | None:
    """The `x-b3-*` headers, None when none is present; MalformedHeader when unusable."""
    raw_trace = headers.get(TRACE_ID)
    raw_span = headers.get(SPAN_ID)
    raw_parent = headers.get(PARENT_SPAN_ID)
    raw_sampled = headers.get(SAMPLED)
    raw_flags = headers.get(FLAGS)
    debug = False
    if raw_flags is not None:
        debug = _lookup(_MULTI_DEBUG, raw_flags, FLAGS)
    sampled = None if raw_sampled is None else _lookup(_MULTI_SAMPLED, raw_sampled, SAMPLED)
    if debug:
        sampled = True
    if raw_trace is None and raw_span is None:
        if raw_parent is not None:
            raise MalformedHeader(f"{PARENT_SPAN_ID} without {TRACE_ID} and {SPAN_ID}")
        if raw_sampled is None and raw_flags is None:
            return None
        return TraceContext(None, None, sampled, debug)
    if raw_trace is None or raw_span is None:
        raise MalformedHeader(f"{TRACE_ID} and {SPAN_ID} must come together")
    if raw_parent is not None:
        span_id(raw_parent)
    return TraceContext(trace_id(raw_trace), span_id(raw_span), sampled, debug)


def extract_single(headers: dict[str, str]) -> TraceContext | None:
    """`b3: {traceid}-{spanid}[-{sampled}[-{parentspanid}]]` or `b3: {sampled}` (0, 1 or d)."""
    value = headers.get(SINGLE)
    if value is None:
        return None
    parts = value.split("-")
    if len(parts) == 1:
        return _single_decision(value)
    if len(parts) > 4:
        raise MalformedHeader(f"{SINGLE} has {len(parts)} fields, at most 4 are allowed")
    decision = _single_decision(parts[2]) if len(parts) > 2 else TraceContext(None, None, None)
    if len(parts) == 4:
        span_id(parts[3])
    return TraceContext(trace_id(parts[0]), span_id(parts[1]), decision.sampled, decision.debug)


def _single_decision(value: str) -> TraceContext:
    if value == _SINGLE_DEBUG:
        return TraceContext(None, None, True, True)
    return TraceContext(None, None, _lookup(_SINGLE_SAMPLED, value, SINGLE))


def _lookup(choices: dict[str, bool], value: str, header: str) -> bool:
    found = choices.get(value)
    if found is None:
        raise MalformedHeader(f"{header} is {value!r}; expected one of {', '.join(choices)}")
    return found


def inject_multi(out: list[tuple[str, str]], trace: str, span: str, parent: str | None,
                 sampled: bool, debug: bool) -> None:
    """Append the `x-b3-*` headers that carry this hop's span on to the next hop."""
    out.append((TRACE_ID, trace))
    out.append((SPAN_ID, span))
    if parent is not None:
        out.append((PARENT_SPAN_ID, parent))
    out.append((SAMPLED, "1" if sampled else "0"))
    if debug:
        out.append((FLAGS, "1"))


def inject_single(out: list[tuple[str, str]], trace: str, span: str, parent: str | None,
                  sampled: bool, debug: bool) -> None:
    """Append `b3: {traceid}-{spanid}-{1|0|d}[-{parentspanid}]` (the sampling state always written, as Kong's
    b3-single injector writes it whenever known)."""
    state = _SINGLE_DEBUG if debug else ("1" if sampled else "0")
    value = f"{trace}-{span}-{state}" if parent is None else f"{trace}-{span}-{state}-{parent}"
    out.append((SINGLE, value))
