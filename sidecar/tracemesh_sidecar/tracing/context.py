"""Reading the incoming trace context from request headers, in the formats one hop's tracer reads.

Which formats a hop reads depends on its provider, as with Envoy's tracers: the zipkin tracer reads
B3 (multi, then single), and W3C only under USE_B3_WITH_W3C_PROPAGATION; the opentelemetry tracer
reads W3C only. Jaeger and OT are read where configured (`tracing.extraExtract`). Formats are read
in FORMATS' order. A present but malformed format is treated as absent and named in the result (the
caller counts it); extraction never raises. The first format carrying ids gives the trace and
parent span; the first carrying a sampling decision gives the decision, unless it names another
trace (a stale header left over from an unrelated request must not steer this one).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

from tracemesh_sidecar.native_dataclasses import rebuilt_from_fields
from tracemesh_sidecar.tracing import b3, jaeger, ot, w3c
from tracemesh_sidecar.tracing.wire import MalformedHeader, TraceContext


class Extractor(ABC):
    """One format's reader. A native class, so that compiled code calls `read` through mypyc's vtable: a module
    function held as a Python callable is called generically, its arguments parsed (~1k instructions a format a
    request)."""

    @abstractmethod
    def read(self, headers: dict[str, str]) -> TraceContext | None:
        """The format's context, None when none of its headers is present; MalformedHeader when unusable."""


class _B3Multi(Extractor):
    def read(self, headers: dict[str, str]) -> TraceContext | None:
        return b3.extract_multi(headers)


class _B3Single(Extractor):
    def read(self, headers: dict[str, str]) -> TraceContext | None:
        return b3.extract_single(headers)


class _W3C(Extractor):
    def read(self, headers: dict[str, str]) -> TraceContext | None:
        return w3c.extract(headers)


class _Jaeger(Extractor):
    def read(self, headers: dict[str, str]) -> TraceContext | None:
        return jaeger.extract(headers)


class _OT(Extractor):
    def read(self, headers: dict[str, str]) -> TraceContext | None:
        return ot.extract(headers)


# Format names as they appear in stats (`tracing.malformed.<name>`) and in ExtractResult.malformed.
B3_MULTI: Final = "b3"
B3_SINGLE: Final = "b3_single"
W3C: Final = "w3c"
JAEGER: Final = "jaeger"
OT: Final = "ot"
# Every format the proxy can read, in reading order.
FORMATS: Final[dict[str, Extractor]] = {
    B3_MULTI: _B3Multi(), B3_SINGLE: _B3Single(), W3C: _W3C(), JAEGER: _Jaeger(), OT: _OT(),
}
# The headers of each format: what a hop that owns the format must not forward stale.
FORMAT_HEADERS: Final[dict[str, frozenset[str]]] = {
    B3_MULTI: frozenset(b3.MULTI_HEADERS), B3_SINGLE: frozenset((b3.SINGLE,)), W3C: frozenset(w3c.HEADERS),
    JAEGER: frozenset((jaeger.HEADER,)), OT: frozenset(ot.HEADERS),
}
# Every header that carries trace context in some format (baggage is not context and passes).
TRACE_HEADERS: Final = frozenset().union(*FORMAT_HEADERS.values())


@dataclass(slots=True)
class ExtractResult:
    """Built per request: its own `__init__` (compiled), as TraceContext."""

    context: TraceContext | None
    malformed: tuple[str, ...]  # names of formats present but unusable, in reading order

    def __init__(self, context: TraceContext | None, malformed: tuple[str, ...]) -> None:
        self.context = context
        self.malformed = malformed

    def __reduce__(self) -> tuple[type[Any], tuple[object, ...]]:
        return rebuilt_from_fields(self)


def readers(names: Collection[str]) -> tuple[tuple[str, Extractor], ...]:
    """The formats named, in reading order; unknown names are ignored."""
    return tuple((name, extractor) for name, extractor in FORMATS.items() if name in names)


def extract(headers: dict[str, str], formats: Collection[str] = FORMATS.keys()) -> ExtractResult:
    return extract_with(headers, readers(formats))


def extract_with(headers: dict[str, str], formats: tuple[tuple[str, Extractor], ...],
                 found_formats: list[str] | None = None) -> ExtractResult:
    """`extract` with the reader list already built (the hop tracer builds it once per config); `found_formats`,
    when given, gets the name of every format present and well-formed, in reading order (header_modes.py)."""
    ids: TraceContext | None = None
    decision: TraceContext | None = None
    tracestate: str | None = None
    malformed: tuple[str, ...] = ()  # grown only on the rare malformed path
    for name, extractor in formats:
        try:
            found = extractor.read(headers)
        except MalformedHeader:
            malformed += (name,)
            continue
        if found is None:
            continue
        if found_formats is not None:
            found_formats.append(name)
        if found.trace_id is not None:
            if ids is None:
                ids = found
            elif found.trace_id != ids.trace_id:
                continue
        if decision is None and found.sampled is not None:
            decision = found
        if tracestate is None:
            tracestate = found.tracestate
    if ids is None and decision is None:
        return ExtractResult(None, malformed)
    if decision is ids and ids is not None and tracestate is ids.tracestate:
        return ExtractResult(ids, malformed)  # the usual case: one format carried it all
    context = TraceContext(
        trace_id=ids.trace_id if ids is not None else None,
        span_id=ids.span_id if ids is not None else None,
        sampled=decision.sampled if decision is not None else None,
        debug=decision is not None and decision.debug,
        tracestate=tracestate,
    )
    return ExtractResult(context, malformed)
