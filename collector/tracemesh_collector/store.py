"""The collector's span store: bounded in bytes, indexed, and queried with Zipkin's semantics.

Pure (no I/O, no clock): callers pass times in. As Zipkin's storage does, the store keeps each
distinct report of a span (a retried batch adds nothing: an equal report is kept once) and
answers with the reports merged exactly as Zipkin merges a trace (trace_merge), so a shared
SERVER span and the caller's CLIENT span with the same id stay two spans, and both services stay
listed. Traces are keyed by the low 64 bits of their id, so a 64-bit id finds the 128-bit trace
it is the low half of, as Zipkin does for mixed 64/128-bit deployments.

The bound counts bytes as well as spans (a span's tags can be megabytes): beyond `max_bytes`
(an estimate of what the stored reports occupy, see `approximate_bytes`) or `max_spans`, whole
traces are evicted, the earliest-starting first. An optional `SpanArchive` hears of every report
kept and every trace evicted, so a disk copy (sqlite_archive) can follow the store.

Dependency links are summed per second of trace time as traces change (dependency_index).
A search walks a time index (trace_index) from the newest trace in its window and stops at its
limit; one with annotationQuery terms the term index (term_index) lists first tests only the traces
listed under them. Each kept report shares its equal strings and endpoints with the others
(span_interning).
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from sys import getsizeof
from typing import Final, Protocol, TypeVar

from tracemesh_collector.dependencies import DependencyLink
from tracemesh_collector.dependency_index import DependencyIndex
from tracemesh_collector.query import TraceQuery, matches, trace_timestamp
from tracemesh_collector.span_interning import SpanInterner
from tracemesh_collector.term_index import Term, TermIndex, add_terms, query_terms, shows
from tracemesh_collector.trace_index import EVERY_TRACE, IndexKey, TraceIndex
from tracemesh_collector.trace_merge import cleanup_order, merge_trace
from tracemesh_sidecar.spans.model import (
    Annotation,
    AttributeValue,
    Endpoint,
    OtlpDetail,
    OtlpEvent,
    OtlpLink,
    Span,
    SpanKind,
)

# A span id's one report, or its distinct reports when there are several (a list per span cost ~70 bytes).
Reports = Span | list[Span]
DEFAULT_MAX_SPANS: Final = 100_000
# A search with annotationQuery terms that walked this many traces without filling its limit has its common
# terms listed again when they are no longer common (term_index.relist): the next one is not a walk.
RELIST_AFTER_WALKING = 4096
DEFAULT_MAX_BYTES: Final = 512 * 1024 * 1024  # a mesh span with its ~20 tags takes ~1 KB (bench.collector): ~500 000

# What approximate_bytes counts for a report's fixed objects (CPython's sizes), and for its part in its trace's
# dict and in the store's indexes (what tracemalloc shows beyond the reports' objects:
# tests/bench/test_collector_estimate.py)
_INDEX_BYTES: Final = 240
_REPORT_BYTES: Final = getsizeof(Span("", "", "", None, 0, 0, Endpoint())) + _INDEX_BYTES
_ANNOTATION_BYTES: Final = getsizeof(Annotation(0, ""))
_DETAIL_BYTES: Final = getsizeof(OtlpDetail())
_EVENT_BYTES: Final = getsizeof(OtlpEvent(0, ""))
_LINK_BYTES: Final = getsizeof(OtlpLink("", ""))

_K = TypeVar("_K")


class SpanArchive(Protocol):
    """Where the store's contents are copied as they change (a disk copy that survives restarts)."""

    def record(self, kept: Sequence[Span], evicted_trace_keys: Sequence[str]) -> None: ...


class SpanStore:
    def __init__(self, max_spans: int = DEFAULT_MAX_SPANS, max_bytes: int = DEFAULT_MAX_BYTES,
                 archive: SpanArchive | None = None, term_index: TermIndex | None = None) -> None:
        if max_spans < 1:
            raise ValueError(f"max_spans must be at least 1, got {max_spans}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        self.max_spans = max_spans
        self.max_bytes = max_bytes
        self.archive = archive
        # trace key -> span id -> the distinct reports of that span
        self._traces: dict[str, dict[str, Reports]] = {}
        self._trace_bytes: dict[str, int] = {}
        self._merged: dict[str, list[Span]] = {}  # trace key -> merge_trace of its reports, until it changes
        self._span_count = 0
        self._byte_count = 0
        # eviction order: trace key -> (start, generation); the heap holds (start, generation, key)
        # entries, a stale one (its trace gone or started earlier since) is skipped when popped
        self._trace_start: dict[str, tuple[int, int]] = {}
        self._eviction_heap: list[tuple[int, int, str]] = []
        self._generations = itertools.count()
        # the traces in time order per service and per (service, span name): what a search walks
        self._time_index = TraceIndex()
        self._term_index = term_index or TermIndex()  # the traces per annotationQuery term
        self._dependency_index = DependencyIndex()
        self._interner = SpanInterner()
        # lowercase local service name -> (span name, kind) / remote service name -> span count
        self._operations: dict[str, Counter[tuple[str, SpanKind | None]]] = {}
        self._remote_services: dict[str, Counter[str]] = {}

    @property
    def span_count(self) -> int:
        """Distinct span reports held (two partial reports of one span count twice, as in Zipkin's storage)."""
        return self._span_count

    @property
    def byte_count(self) -> int:
        """The estimated bytes the held reports occupy, the figure `max_bytes` bounds."""
        return self._byte_count

    @property
    def trace_count(self) -> int:
        return len(self._traces)

    # -----------------------------------------------------------------------------------------
    # Writing

    def add(self, spans: Iterable[Span]) -> None:
        """Keep the reports not already held, then evict the oldest traces beyond the bounds."""
        kept = self._add_all(spans)
        evicted = self._evict_beyond_bounds()
        if self.archive is not None and (kept or evicted):
            # a batch beyond the bounds may have evicted traces it brought itself: those are not kept
            self.archive.record([span for span in kept if span.trace_id[-16:] in self._traces], evicted)

    def load(self, spans: Iterable[Span]) -> list[str]:
        """Take back spans an archive held, telling no archive; the trace keys evicted to fit are returned."""
        self._add_all(spans)
        return self._evict_beyond_bounds()

    def _add_all(self, spans: Iterable[Span]) -> list[Span]:
        """Keep the reports not already held, then re-place each trace they changed in the time index once."""
        kept = []
        changed: dict[str, tuple[set[IndexKey], set[Term]]] = {}
        for span in spans:
            if self._add_one(span):
                kept.append(span)
                trace_key = span.trace_id[-16:]
                placed = changed.get(trace_key)
                if placed is None:
                    placed = changed[trace_key] = ({EVERY_TRACE}, set())
                placed[0].update(_index_keys(span))
                add_terms(placed[1], span)
        held = self._traces.__contains__
        for trace_key, (index_keys, terms) in changed.items():
            self._time_index.update(trace_key, *_placement(self._traces[trace_key], index_keys))
            self._term_index.add(trace_key, terms, held)
            self._dependency_index.changed(trace_key)
        return kept

    def _add_one(self, span: Span) -> bool:
        trace_key = span.trace_id[-16:]
        trace = self._traces.get(trace_key)
        if trace is None:
            trace = self._traces[trace_key] = {}
        held = trace.get(span.id)
        if held is not None and (span == held if isinstance(held, Span) else span in held):
            return False
        unshared = self._interner.compact(span)
        if held is None:
            trace[span.id] = span
        elif isinstance(held, Span):
            trace[span.id] = [held, span]
        else:
            held.append(span)
        self._merged.pop(trace_key, None)
        size = approximate_bytes(span, unshared)
        self._span_count += 1
        self._byte_count += size
        self._trace_bytes[trace_key] = self._trace_bytes.get(trace_key, 0) + size
        self._index(trace_key, span, +1)
        self._note_start(trace_key, span.timestamp)
        return True

    def _evict_beyond_bounds(self) -> list[str]:
        evicted = []
        while self._span_count > self.max_spans or self._byte_count > self.max_bytes:
            evicted.append(self._evict_oldest_trace())
        return evicted

    def _note_start(self, trace_key: str, timestamp: int) -> None:
        current = self._trace_start.get(trace_key)
        if current is not None and (not timestamp or current[0] <= timestamp):
            return
        entry = (timestamp, next(self._generations))
        self._trace_start[trace_key] = entry
        heapq.heappush(self._eviction_heap, (*entry, trace_key))

    def _evict_oldest_trace(self) -> str:
        while True:  # the bounds are exceeded only while some trace is held, and every held trace is in the heap
            start, generation, trace_key = heapq.heappop(self._eviction_heap)
            if self._trace_start.get(trace_key) == (start, generation):
                self._remove_trace(trace_key)
                return trace_key

    def _remove_trace(self, trace_key: str) -> None:
        trace = self._traces.pop(trace_key)
        self._merged.pop(trace_key, None)
        del self._trace_start[trace_key]
        self._byte_count -= self._trace_bytes.pop(trace_key)
        self._time_index.remove(trace_key)
        self._dependency_index.evicted(trace_key)
        for span in _every_report(trace):
            self._span_count -= 1
            self._index(trace_key, span, -1)

    def _index(self, trace_key: str, span: Span, delta: int) -> None:
        local = _service_key(span.local_endpoint)
        remote = _service_key(span.remote_endpoint)
        if local is not None:
            _count(self._operations, local, (span.name, span.kind), delta)
            if remote is not None:
                _count(self._remote_services, local, remote, delta)

    # -----------------------------------------------------------------------------------------
    # Reading

    def services(self) -> list[str]:
        """Service names that recorded spans (local endpoints), sorted."""
        return sorted(self._operations)

    def span_names(self, service: str) -> list[str]:
        """Names of the spans `service` recorded, sorted."""
        return sorted({name for name, _ in self._operations.get(service.lower(), ()) if name})

    def operations(self, service: str) -> list[tuple[str, SpanKind | None]]:
        """(span name, kind) pairs `service` recorded, sorted by name."""
        return sorted((op for op in self._operations.get(service.lower(), ()) if op[0]),
                      key=lambda op: (op[0], op[1] or ""))

    def remote_services(self, service: str) -> list[str]:
        """Remote endpoint service names of the spans `service` recorded, sorted."""
        return sorted(self._remote_services.get(service.lower(), ()))

    def find_traces(self, query: TraceQuery) -> list[list[Span]]:
        """Traces answering `query`, newest first, at most `query.limit`."""
        service = (query.service_name or "").lower()
        index_key = (service, (query.span_name or "").lower() if service else "")
        if query.limit <= 0:
            return []
        earliest = query.end_us - query.lookback_us
        terms = query_terms(query.annotation_query)
        if terms:
            listed = self._term_index.candidates(terms, self._traces.__contains__)
            if listed is not None:  # newest first, in the time index's order
                timestamp = self._time_index.timestamp
                timed = sorted(((time, key) for key in listed
                                if (time := timestamp(key)) and earliest <= time <= query.end_us), reverse=True)
                return self._first_matching((key for _, key in timed), query)[0]
        found, walked = self._first_matching(self._time_index.newest(index_key, earliest, query.end_us), query)
        if len(found) < query.limit and walked >= RELIST_AFTER_WALKING:
            for term in self._term_index.due_for_relisting(terms, len(self._traces)):
                self._term_index.relist(term, [key for key, trace in self._traces.items()
                                               if any(shows(span, term) for span in _every_report(trace))])
        return found

    def _first_matching(self, trace_keys: Iterable[str], query: TraceQuery) -> tuple[list[list[Span]], int]:
        """The first `query.limit` traces of `trace_keys` that answer `query`, and how many traces were tested."""
        found: list[list[Span]] = []
        tested = 0
        for key in trace_keys:
            tested += 1
            spans = self._spans(key)
            if matches(spans, query):
                found.append(spans)
                if len(found) == query.limit:
                    break
        return found, tested

    def get_trace(self, trace_id: str) -> list[Span]:
        """The spans of one trace (16 or 32 hex); a 64-bit id also finds the 128-bit trace it ends."""
        trace_id = trace_id.lower()
        if len(trace_id) != 32:
            return list(self._spans(trace_id))
        trace = self._traces.get(trace_id[16:], {})
        return merge_trace([span for span in _every_report(trace) if span.trace_id in (trace_id, trace_id[16:])])

    def get_traces(self, trace_ids: Iterable[str]) -> list[list[Span]]:
        """The known traces among `trace_ids`; unknown ids are left out."""
        return [spans for spans in map(self.get_trace, trace_ids) if spans]

    def dependencies(self, end_us: int, lookback_us: int) -> list[DependencyLink]:
        """Dependency links over the traces whose time falls in `[end - lookback, end]`."""
        return self._dependency_index.links(
            end_us, lookback_us, self._dependency_view,
            lambda first_us, last_us: self._time_index.newest(EVERY_TRACE, first_us, last_us))

    def count_dependencies(self, budget: int) -> bool:
        """Count the calls of up to `budget` of the traces changed since `dependencies` last counted them; whether
        none is left. A caller on an event loop counts in slices between other work (dependency_links)."""
        return self._dependency_index.count_changed(self._dependency_view, budget)

    def _dependency_view(self, trace_key: str) -> tuple[int, Sequence[Span]]:
        """A trace's time as indexed, and its reports as they are when no span id has two: merging would only
        sort them (and set the longest trace id), which changes none of its calls; else its merged spans."""
        trace = self._traces.get(trace_key)
        if not trace:
            return 0, []
        spans = _every_report(trace)
        return self._time_index.timestamp(trace_key), spans if len(spans) == len(trace) else self._spans(trace_key)

    def _spans(self, trace_key: str) -> list[Span]:
        merged = self._merged.get(trace_key)
        if merged is None:
            trace = self._traces.get(trace_key)
            if not trace:
                return []
            merged = self._merged[trace_key] = merge_trace(_every_report(trace))
        return merged


def _index_keys(span: Span) -> Iterator[IndexKey]:
    """The indexes a span puts its trace in: each service it names (local or remote), alone and with its name."""
    name = span.name.lower()
    for endpoint in (span.local_endpoint, span.remote_endpoint):
        service = _service_key(endpoint)
        if service is not None:
            yield service, ""
            if name:
                yield service, name


def _every_report(trace: dict[str, Reports]) -> list[Span]:
    spans: list[Span] = []
    for reports in trace.values():
        if isinstance(reports, Span):
            spans.append(reports)
        else:
            spans += reports
    return spans


def _placement(trace: dict[str, Reports], index_keys: set[IndexKey]) -> tuple[set[IndexKey], int]:
    """The indexes a changed trace belongs in and its time: what a search sees of the merged trace.

    When no span id has two reports, merge_trace only sorts the reports (cleanup_order): the reports'
    own names and services are the merged spans', and the merged trace's first root with a timestamp
    (query.trace_timestamp) is the root with the least sort key. Otherwise the trace is merged, as a
    search would merge it: a merged span can pair one report's service with another's name.
    """
    spans = _every_report(trace)
    if len(spans) > len(trace):
        merged = merge_trace(spans)
        index_keys.update(key for span in merged for key in _index_keys(span))
        return index_keys, trace_timestamp(merged)
    roots = [span for span in spans if span.parent_id is None and span.timestamp]
    if roots:
        return index_keys, min(roots, key=cleanup_order).timestamp
    return index_keys, min((span.timestamp for span in spans if span.timestamp), default=0)


def approximate_bytes(span: Span, unshared: int) -> int:
    """About what one stored report adds to the collector's memory: its own objects at their CPython sizes (the
    span, its tags dict, annotations and OTLP detail), `unshared` (the bytes of the strings, endpoints and tag
    pairs SpanInterner.compact found no shared copy of) and its part in the store's tables and indexes.

    `python -m bench.collector` prints it beside the RSS per stored span; tests/bench/test_collector_estimate.py
    holds it to what tracemalloc counts.
    """
    size = _REPORT_BYTES + getsizeof(span.tags) + unshared
    if span.annotations:
        size += getsizeof(span.annotations) + sum(_ANNOTATION_BYTES + getsizeof(annotation.value)
                                                  for annotation in span.annotations)
    detail = span.otlp
    if detail is not None:
        # the resource dict is shared by the spans of one request; the attributes are what compact left it
        size += _DETAIL_BYTES + _attributes_bytes(detail.attributes, interned=True)
        size += sum(_EVENT_BYTES + getsizeof(event.name) + _attributes_bytes(event.attributes)
                    for event in detail.events)
        size += sum(_LINK_BYTES + 2 * getsizeof(link.span_id) + _attributes_bytes(link.attributes)
                    for link in detail.links)
    return size


def _attributes_bytes(attributes: dict[str, AttributeValue], interned: bool = False) -> int:
    """A dict of attributes with its keys and values; when `interned` (what compact left an OTLP span), its keys
    and text values are counted in `unshared` already: only the dict and its other values."""
    if not attributes:
        return 0
    if interned:
        return getsizeof(attributes) + sum(getsizeof(value) for value in attributes.values()
                                           if value.__class__ is not str)
    return getsizeof(attributes) + sum(getsizeof(key) + getsizeof(value) for key, value in attributes.items())


def _service_key(endpoint: Endpoint | None) -> str | None:
    if endpoint is None or not endpoint.service_name:
        return None
    return endpoint.service_name.lower()


def _count(index: dict[str, Counter[_K]], service: str, key: _K, delta: int) -> None:
    counts = index.get(service)
    if counts is None:  # not setdefault(service, Counter()): that builds a Counter per span
        counts = index[service] = Counter()
    counts[key] += delta
    if counts[key] <= 0:
        del counts[key]
        if not counts:
            del index[service]

