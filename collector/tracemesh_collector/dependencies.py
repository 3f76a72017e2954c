"""Service dependency links derived from traces, the way Zipkin's DependencyLinker counts them.

One link per RPC: a SERVER (or CONSUMER) span links its parent span's service to its own; a
CLIENT (or PRODUCER) span links its service to its remote endpoint's only when no SERVER
span answers it in the trace (the callee is not instrumented), so an instrumented RPC is
counted once. A call is an error when either side carries the `error` tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from tracemesh_sidecar.spans.model import Span

_CALLERS: Final = ("CLIENT", "PRODUCER")
_CALLEES: Final = ("SERVER", "CONSUMER")


@dataclass(frozen=True, slots=True)
class DependencyLink:
    parent: str
    child: str
    call_count: int
    error_count: int


Calls = tuple[tuple[str, str, int, int], ...]  # one trace's calls: (parent, child, calls, errors) per pair
CallCounts = dict[tuple[str, str], list[int]]  # (parent, child) -> [calls, errors], summed over traces


def link_traces(traces: Iterable[Sequence[Span]]) -> list[DependencyLink]:
    """Links summed over `traces`, sorted by parent then child."""
    counts: CallCounts = {}
    for spans in traces:
        add_calls(counts, trace_calls(spans))
    return links_of(counts)


def trace_calls(spans: Sequence[Span]) -> Calls:
    """The calls one trace makes, summed per (parent, child) in the order first made."""
    counts: CallCounts = {}
    add_calls(counts, ((parent, child, 1, int(is_error)) for parent, child, is_error in _trace_calls(spans)))
    return tuple((parent, child, calls, errors) for (parent, child), (calls, errors) in counts.items())


def add_calls(counts: CallCounts, calls: Iterable[tuple[str, str, int, int]], sign: int = 1) -> None:
    """Add (sign 1) or take back (sign -1) a trace's calls; a pair whose count comes back to 0 is gone."""
    for parent, child, call_count, error_count in calls:
        call = counts.get((parent, child))
        if call is None:
            call = counts[parent, child] = [0, 0]
        call[0] += sign * call_count
        call[1] += sign * error_count
        if not call[0]:
            del counts[parent, child]


def links_of(counts: CallCounts) -> list[DependencyLink]:
    """The summed calls as links, sorted by parent then child."""
    return [DependencyLink(parent, child, calls, errors) for (parent, child), (calls, errors) in sorted(counts.items())]


def _trace_calls(spans: Sequence[Span]) -> Iterable[tuple[str, str, bool]]:
    first: dict[str, Span] = {}  # span id -> its first report
    more: dict[str, list[Span]] = {}  # the later reports of an id reported twice (Zipkin's shared spans)
    # ids of caller spans a callee answered: as its parent, or sharing its id (Zipkin's shared-span model)
    answered: set[str | None] = set()
    for span in spans:
        if first.setdefault(span.id, span) is not span:
            more.setdefault(span.id, []).append(span)
        if span.kind in _CALLEES:
            answered.add(span.parent_id)
            if span.shared:
                answered.add(span.id)
    for span in spans:
        service = span.local_endpoint.service_name
        remote = span.remote_endpoint.service_name if span.remote_endpoint else None
        if span.kind in _CALLEES and service:
            caller = _caller_span(span, first, more)
            # an uninstrumented caller is known only from the callee's remote endpoint
            parent = (caller.local_endpoint.service_name if caller else None) or remote
            is_error = "error" in span.tags or (caller is not None and "error" in caller.tags)
            if parent:
                yield parent, service, is_error
        elif span.kind in _CALLERS and service and remote and span.id not in answered:
            yield service, remote, "error" in span.tags


def _caller_span(span: Span, first: dict[str, Span], more: dict[str, list[Span]]) -> Span | None:
    """The span on the calling side: the CLIENT sharing a shared span's id, else the parent span."""
    if span.shared:
        for candidate in [first[span.id], *more.get(span.id, [])]:
            if candidate.kind in _CALLERS:
                return candidate
    parent = first.get(span.parent_id or "")  # no span id is empty
    if parent is None:
        return None
    later = more.get(parent.id)
    if later is None:  # one report of the parent: most traces
        return parent if parent is not span and parent.local_endpoint.service_name else None
    parents = [candidate for candidate in (parent, *later)
               if candidate is not span and candidate.local_endpoint.service_name]
    return next((candidate for candidate in parents if candidate.kind in _CALLERS), parents[0] if parents else None)
