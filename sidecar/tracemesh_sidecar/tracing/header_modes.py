"""Which trace header formats one hop writes, and which it removes: Istio's fixed set, or Kong's header modes.

Istio's (a provider without `headerType`): the tracer's own formats, the same for every request (hop.py).
Kong's Zipkin plugin `header_type` (kong/observability/tracing/propagation/init.lua get_plugin_params,
followed here), a tracemesh extension of the provider:

- `preserve`: read every format (B3 multi, B3 single, W3C, Jaeger, OT, in that order); write back each
  format that came in, well-formed, carrying this hop's span; when none came, `defaultHeaderType`.
- `ignore`: read none (a new trace whatever came in); write `defaultHeaderType`. Other formats' headers
  pass untouched, as Kong's `ignore` leaves them.
- a format (`b3`, `b3-single`, `w3c`, `jaeger`, `ot`): read every format; write that format and, as Kong's
  `inject = {"preserve", header_type}` does, the one that came in (or the default when none came).

A request whose formats disagree (more than one format came in, or one other than the fixed one) gets
them all written, each carrying the same context, and is counted (`tracing.header_type_mismatch`),
where Kong logs "Mismatched header types". The plan for each combination of formats that came in is
built once and cached (at most 2^5 of them): the request path only looks it up.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Final, NamedTuple

from tracemesh_sidecar.tracing import b3, jaeger, ot, w3c
from tracemesh_sidecar.tracing.context import B3_MULTI, B3_SINGLE, FORMAT_HEADERS, FORMATS, JAEGER, OT, W3C

MISMATCH_TOTAL: Final = "tracing.header_type_mismatch"
# A provider's `headerType`/`defaultHeaderType` names (Kong's) -> the format names of context.py.
HEADER_TYPE_FORMATS: Final = {"b3": B3_MULTI, "b3-single": B3_SINGLE, "w3c": W3C, "jaeger": JAEGER, "ot": OT}


class Writer(ABC):
    """One format's writer. A native class, as context.py's Extractor: compiled code calls `write` through mypyc's
    vtable, where a closure held as a Python callable was called generically, its seven arguments parsed."""

    @abstractmethod
    def write(self, out: list[tuple[str, str]], trace: str, span: str, parent: str | None, sampled: bool,
              debug: bool, tracestate: str | None) -> None:
        """Append the format's headers carrying this context to `out`."""


class _B3MultiWriter(Writer):
    def write(self, out: list[tuple[str, str]], trace: str, span: str, parent: str | None, sampled: bool,
              debug: bool, tracestate: str | None) -> None:
        b3.inject_multi(out, trace, span, parent, sampled, debug)


class _B3SingleWriter(Writer):
    def write(self, out: list[tuple[str, str]], trace: str, span: str, parent: str | None, sampled: bool,
              debug: bool, tracestate: str | None) -> None:
        b3.inject_single(out, trace, span, parent, sampled, debug)


class _W3CWriter(Writer):
    def write(self, out: list[tuple[str, str]], trace: str, span: str, parent: str | None, sampled: bool,
              debug: bool, tracestate: str | None) -> None:
        w3c.inject(out, trace, span, sampled, tracestate)  # the one format with a tracestate


class _JaegerWriter(Writer):
    def write(self, out: list[tuple[str, str]], trace: str, span: str, parent: str | None, sampled: bool,
              debug: bool, tracestate: str | None) -> None:
        jaeger.inject(out, trace, span, parent, sampled, debug)


class _OTWriter(Writer):
    def write(self, out: list[tuple[str, str]], trace: str, span: str, parent: str | None, sampled: bool,
              debug: bool, tracestate: str | None) -> None:
        ot.inject(out, trace, span, parent, sampled, debug)


WRITERS: Final[dict[str, Writer]] = {B3_MULTI: _B3MultiWriter(), B3_SINGLE: _B3SingleWriter(), W3C: _W3CWriter(),
                                     JAEGER: _JaegerWriter(), OT: _OTWriter()}


class WritePlan(NamedTuple):
    writers: tuple[Writer, ...]
    removals: tuple[frozenset[str], ...]  # by variant(): the headers to drop from the forwarded request
    mismatch: bool  # the formats that came in disagree: counted


def variant(has_parent: bool, debug: bool, has_tracestate: bool) -> int:
    """Which of a plan's removal sets applies: what is written depends on these three."""
    return has_parent | (debug << 1) | (has_tracestate << 2)


def write_plan(formats: Iterable[str], droppable: frozenset[str], always_removed: frozenset[str],
               mismatch: bool = False) -> WritePlan:
    """Writing `formats`; removing the `droppable` headers not written for each variant, and `always_removed`."""
    writers = tuple(WRITERS[name] for name in formats)
    removals = []
    for number in range(8):
        has_parent, debug, has_tracestate = bool(number & 1), bool(number & 2), bool(number & 4)
        written: list[tuple[str, str]] = []
        for writer in writers:
            writer.write(written, "", "", "" if has_parent else None, True, debug, "" if has_tracestate else None)
        removals.append(droppable.difference(name for name, _ in written).union(always_removed))
    return WritePlan(writers, tuple(removals), mismatch)


class HeaderMode:
    """Kong's `header_type` for one provider: what to read, and per request what to write."""

    def __init__(self, header_type: str, default_header_type: str, always_removed: frozenset[str]) -> None:
        if header_type not in HEADER_TYPE_FORMATS and header_type not in ("preserve", "ignore"):
            raise ValueError(f"headerType is {header_type!r}")
        self._default = (HEADER_TYPE_FORMATS[default_header_type],)
        self._fixed = (HEADER_TYPE_FORMATS[header_type],) if header_type in HEADER_TYPE_FORMATS else ()
        self._ignore = header_type == "ignore"
        self.reads: tuple[str, ...] = () if self._ignore else tuple(FORMATS)
        self._always_removed = always_removed
        self._plans: dict[tuple[str, ...], WritePlan] = {}

    def plan(self, came: list[str]) -> WritePlan:
        """The plan for a request that came with these well-formed formats (context.extract_with's found_formats)."""
        key = tuple(came)
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = self._build(key)
        return found

    def _build(self, came: tuple[str, ...]) -> WritePlan:
        formats = dict.fromkeys(self._fixed + (came or self._default))  # ordered, without repeats
        mismatch = bool(came) and len(dict.fromkeys(self._fixed + came)) > 1
        owned = set(self.reads).union(formats)
        droppable = frozenset().union(*(FORMAT_HEADERS[name] for name in owned))
        return write_plan(formats, droppable, self._always_removed, mismatch)
