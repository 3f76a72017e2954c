"""Dependency links summed per second of trace time, so that `/dependencies` costs what changed since it last ran.

Zipkin links the traces whose time falls in `[end - lookback, end]` (dependencies.py counts each
trace's calls as its DependencyLinker does). Here each trace's calls are counted once, when a
`links` call (or `count_changed`, a slice at a time) first finds the trace changed since, and summed
into the second its time falls in; a trace that changes again or is evicted has its calls taken back
out. A window then adds up the seconds it covers whole, and, trace by trace, the traces in the
part-seconds at its two ends. The answer is the one a pass over every trace in the window gives;
the ingest path only marks traces changed. Pure: the store hands in a trace's time and spans, and
the traces between two times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final

from tracemesh_collector.dependencies import CallCounts, Calls, DependencyLink, add_calls, links_of, trace_calls
from tracemesh_sidecar.spans.model import Span

SECOND_US: Final = 1_000_000
MAX_SHARED: Final = 4096  # distinct call sets kept as one object each (a mesh's traces repeat a few shapes)


class DependencyIndex:
    def __init__(self) -> None:
        self._counted: dict[str, tuple[int, Calls]] = {}  # trace key -> its time and its calls, as summed
        self._changed: set[str] = set()
        self._seconds: dict[int, CallCounts] = {}
        self._shared: dict[Calls, Calls] = {}

    def changed(self, trace_key: str) -> None:
        self._changed.add(trace_key)

    def evicted(self, trace_key: str) -> None:
        self._changed.discard(trace_key)
        self._take_out(trace_key)

    def links(self, end_us: int, lookback_us: int, trace_of: Callable[[str], tuple[int, Sequence[Span]]],
              traces_between: Callable[[int, int], Iterable[str]]) -> list[DependencyLink]:
        """Links over the traces whose time is in `[end_us - lookback_us, end_us]`; `trace_of` gives a trace's
        time (query.trace_timestamp of its merged spans) and spans whose calls are its merged spans' (in any
        order), `traces_between(first_us, last_us)` the keys of the traces whose time is in that range."""
        self.count_changed(trace_of)
        first_us, last_us = end_us - lookback_us, end_us
        counts: CallCounts = {}
        if last_us < first_us:
            return []
        first_whole = -(-first_us // SECOND_US)  # the seconds wholly inside the window
        last_whole = (last_us + 1) // SECOND_US - 1
        for second, calls in self._seconds.items():
            if first_whole <= second <= last_whole:
                add_calls(counts, tuple((parent, child, call_count, error_count)
                                        for (parent, child), (call_count, error_count) in calls.items()))
        if first_whole > last_whole:
            ends = [(first_us, last_us)]
        else:
            ends = [(first_us, first_whole * SECOND_US - 1), ((last_whole + 1) * SECOND_US, last_us)]
        for start, stop in ends:
            if start <= stop:
                for trace_key in traces_between(start, stop):
                    counted = self._counted.get(trace_key)
                    if counted is not None:
                        add_calls(counts, counted[1])
        return links_of(counts)

    def count_changed(self, trace_of: Callable[[str], tuple[int, Sequence[Span]]], budget: int | None = None) -> bool:
        """Count the calls of up to `budget` (every one: None) of the traces changed since they were last counted,
        as `links` does first; whether none is left."""
        shared, changed = self._shared, self._changed
        for _ in range(len(changed) if budget is None else min(budget, len(changed))):
            trace_key = changed.pop()
            self._take_out(trace_key)
            timestamp, spans = trace_of(trace_key)
            if not timestamp:  # in no window
                continue
            calls = trace_calls(spans)
            if not calls:
                continue
            calls = shared.get(calls) or calls
            if len(shared) < MAX_SHARED:
                shared.setdefault(calls, calls)
            self._counted[trace_key] = (timestamp, calls)
            second = self._seconds.get(timestamp // SECOND_US)
            if second is None:
                second = self._seconds[timestamp // SECOND_US] = {}
            add_calls(second, calls)
        return not changed

    def _take_out(self, trace_key: str) -> None:
        counted = self._counted.pop(trace_key, None)
        if counted is None:
            return
        timestamp, calls = counted
        second = self._seconds[timestamp // SECOND_US]
        add_calls(second, calls, -1)
        if not second:
            del self._seconds[timestamp // SECOND_US]
