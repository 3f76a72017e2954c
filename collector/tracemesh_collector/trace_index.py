"""Trace keys in time order per service and per service + span name, so a search walks the newest first.

A search answers the newest traces first and stops at its `limit`: with every trace of a service
kept sorted by (trace timestamp, trace key), it walks the window `[end - lookback, end]` from its
end and tests one trace at a time, so it costs what its limit costs, not what the store holds
(the scan it replaces merged and sorted every trace of the service per query). The order is the
scan's: timestamp, then trace key, both descending. Traces without a timestamp are in no window
(query.in_window) and so in no index.

An index key is (lowercase service name, lowercase span name or ""); ("", "") holds every trace.
A trace joins the index of each service a span names (local or remote endpoint) and of each
(service, span name) pair, and leaves them all when it is evicted. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final, NamedTuple

from sortedcontainers import SortedList

IndexKey = tuple[str, str]
EVERY_TRACE: Final[IndexKey] = ("", "")

# The entry and key tuples are shared: one per trace in all its indexes, one per index key in all its traces'
# memberships. Named tuples, because mypyc keeps a plain tuple[int, str] unboxed and boxes a new tuple wherever
# it is stored (a compiled build held ~12x the tuples: tests/bench/test_collector_estimate.py).


class _Entry(NamedTuple):
    timestamp: int
    trace_key: str


class _SharedKey(NamedTuple):
    service: str
    span_name: str


class TraceIndex:
    def __init__(self) -> None:
        self._ordered: dict[IndexKey, SortedList[_Entry]] = {}
        self._canonical: dict[IndexKey, _SharedKey] = {}
        self._entries: dict[str, _Entry] = {}
        self._memberships: dict[str, tuple[_SharedKey, ...]] = {}  # a tuple: a set costs ~10x the memory

    def __len__(self) -> int:
        return len(self._memberships)

    def update(self, trace_key: str, index_keys: Iterable[IndexKey], timestamp: int) -> None:
        """The trace is (also) in `index_keys` and its timestamp is now `timestamp` (0: none)."""
        old_memberships = self._memberships.get(trace_key, ())
        joined = tuple(self._intern(key) for key in set(index_keys) if key not in old_memberships)
        memberships = old_memberships + joined
        self._memberships[trace_key] = memberships
        old_entry = self._entries.get(trace_key)
        if old_entry is not None and old_entry.timestamp == timestamp:
            self._insert(old_entry, joined)
            return
        if old_entry is not None:
            self._discard(old_entry, old_memberships)
            del self._entries[trace_key]
        if timestamp:
            entry = self._entries[trace_key] = _Entry(timestamp, trace_key)
            self._insert(entry, memberships)

    def remove(self, trace_key: str) -> None:
        memberships = self._memberships.pop(trace_key, ())
        entry = self._entries.pop(trace_key, None)
        if entry is not None:
            self._discard(entry, memberships)
        for key in memberships:
            if not self._ordered.get(key):
                self._ordered.pop(key, None)
                self._canonical.pop(key, None)

    def timestamp(self, trace_key: str) -> int:
        """The trace's timestamp as indexed; 0 when it has none (or is not held)."""
        entry = self._entries.get(trace_key)
        return 0 if entry is None else entry.timestamp

    def newest(self, index_key: IndexKey, earliest_us: int, latest_us: int) -> Iterator[str]:
        """Trace keys in `index_key` whose timestamp is in `[earliest_us, latest_us]`, newest first, as walked: a
        generator, since mypyc builds the whole list of a returned generator expression (a search at a million
        spans walked 17 ms to take its 10 traces: tests/collector/test_store_index.py)."""
        ordered = self._ordered.get(index_key)
        if ordered is None or latest_us < earliest_us:
            return
        # every key of a timestamp sorts after (t, "") and before (t + 1, "")
        for entry in ordered.irange(_Entry(earliest_us, ""), _Entry(latest_us + 1, ""), inclusive=(True, False),
                                    reverse=True):
            yield entry.trace_key

    def _intern(self, key: IndexKey) -> _SharedKey:
        shared = self._canonical.get(key)
        if shared is None:
            shared = self._canonical[key] = _SharedKey(*key)
        return shared

    def _insert(self, entry: _Entry, index_keys: Iterable[IndexKey]) -> None:
        for key in index_keys:
            ordered = self._ordered.get(key)
            if ordered is None:
                ordered = self._ordered[key] = SortedList()
            ordered.add(entry)

    def _discard(self, entry: _Entry, index_keys: Iterable[IndexKey]) -> None:
        for key in index_keys:
            ordered = self._ordered.get(key)
            if ordered is not None:
                ordered.discard(entry)
