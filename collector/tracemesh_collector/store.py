"""The collector's in-memory span store: bounded, indexed, and queried with Zipkin's semantics.

Pure (no I/O, no clock): callers pass times in. Traces are keyed by the low 64 bits of their
id, so a 64-bit id finds the 128-bit trace it is the low half of, as Zipkin does for mixed
64/128-bit deployments. A span reported twice (same trace id, span id and kind) is merged,
not duplicated, so retried batches are harmless. When the store holds more than `max_spans`
spans, whole traces are evicted, the earliest-starting first.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import TypeVar

from tracemesh_collector.dependencies import DependencyLink, link_traces
from tracemesh_collector.query import TraceQuery, in_window, matches, trace_timestamp
from tracemesh_sidecar.spans.model import Endpoint, Span, SpanKind

DEFAULT_MAX_SPANS = 100_000  # a mesh span with its ~20 tags takes ~3 KB here: ~300 MB at the bound

_SpanKey = tuple[str, str, SpanKind | None]  # trace id, span id, kind
_K = TypeVar("_K")


class SpanStore:
    def __init__(self, max_spans: int = DEFAULT_MAX_SPANS) -> None:
        if max_spans < 1:
            raise ValueError(f"max_spans must be at least 1, got {max_spans}")
        self.max_spans = max_spans
        self._traces: dict[str, dict[_SpanKey, Span]] = {}
        self._span_count = 0
        # eviction order: trace key -> (start, generation); the heap holds (start, generation, key)
        # entries, a stale one (its trace gone or started earlier since) is skipped when popped
        self._trace_start: dict[str, tuple[int, int]] = {}
        self._eviction_heap: list[tuple[int, int, str]] = []
        self._generations = itertools.count()
        # lowercase service name -> trace key -> how many of its spans name the service
        self._service_traces: dict[str, Counter[str]] = {}
        # lowercase local service name -> (span name, kind) / remote service name -> span count
        self._operations: dict[str, Counter[tuple[str, SpanKind | None]]] = {}
        self._remote_services: dict[str, Counter[str]] = {}

    @property
    def span_count(self) -> int:
        return self._span_count

    @property
    def trace_count(self) -> int:
        return len(self._traces)

    # -----------------------------------------------------------------------------------------
    # Writing

    def add(self, spans: Iterable[Span]) -> None:
        """Store `spans`, merging duplicates, then evict the oldest traces beyond the bound."""
        for span in spans:
            self._add_one(span)
        while self._span_count > self.max_spans:
            self._evict_oldest_trace()

    def _add_one(self, span: Span) -> None:
        trace_key = span.trace_id[-16:]
        trace = self._traces.setdefault(trace_key, {})
        span_key = (span.trace_id, span.id, span.kind)
        existing = trace.get(span_key)
        if existing is None:
            self._span_count += 1
        else:
            self._index(trace_key, existing, -1)
            span = merge_spans(existing, span)
        trace[span_key] = span
        self._index(trace_key, span, +1)
        self._note_start(trace_key, span.timestamp)

    def _note_start(self, trace_key: str, timestamp: int) -> None:
        current = self._trace_start.get(trace_key)
        if current is not None and (not timestamp or current[0] <= timestamp):
            return
        entry = (timestamp, next(self._generations))
        self._trace_start[trace_key] = entry
        heapq.heappush(self._eviction_heap, (*entry, trace_key))

    def _evict_oldest_trace(self) -> None:
        while self._eviction_heap:
            start, generation, trace_key = heapq.heappop(self._eviction_heap)
            if self._trace_start.get(trace_key) == (start, generation):
                self._remove_trace(trace_key)
                return

    def _remove_trace(self, trace_key: str) -> None:
        trace = self._traces.pop(trace_key)
        del self._trace_start[trace_key]
        self._span_count -= len(trace)
        for span in trace.values():
            self._index(trace_key, span, -1)

    def _index(self, trace_key: str, span: Span, delta: int) -> None:
        local = _service_key(span.local_endpoint)
        remote = _service_key(span.remote_endpoint)
        for service in {name for name in (local, remote) if name is not None}:
            _count(self._service_traces, service, trace_key, delta)
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
        if query.service_name:
            keys: Iterable[str] = self._service_traces.get(query.service_name.lower(), ())
        else:
            keys = self._traces
        candidates = []
        for key in keys:
            spans = self._spans(key)
            timestamp = trace_timestamp(spans)
            if in_window(timestamp, query.end_us, query.lookback_us):
                candidates.append((timestamp, key, spans))
        candidates.sort(reverse=True)
        found = (spans for _, _, spans in candidates if matches(spans, query))
        return list(itertools.islice(found, min(query.limit, len(candidates))))  # islice refuses > sys.maxsize

    def get_trace(self, trace_id: str) -> list[Span]:
        """The spans of one trace (16 or 32 hex); a 64-bit id also finds the 128-bit trace it ends."""
        trace_id = trace_id.lower()
        spans = self._spans(trace_id[-16:])
        if len(trace_id) == 32:
            spans = [span for span in spans if span.trace_id in (trace_id, trace_id[16:])]
        return spans

    def get_traces(self, trace_ids: Iterable[str]) -> list[list[Span]]:
        """The known traces among `trace_ids`; unknown ids are left out."""
        return [spans for spans in map(self.get_trace, trace_ids) if spans]

    def dependencies(self, end_us: int, lookback_us: int) -> list[DependencyLink]:
        """Dependency links over the traces whose time falls in `[end - lookback, end]`."""
        traces = (self._spans(key) for key in self._traces)
        return link_traces(spans for spans in traces if in_window(trace_timestamp(spans), end_us, lookback_us))

    def _spans(self, trace_key: str) -> list[Span]:
        trace = self._traces.get(trace_key)
        if not trace:
            return []
        return sorted(trace.values(), key=lambda span: (span.timestamp, span.id))


def merge_spans(old: Span, new: Span) -> Span:
    """Two reports of one span as one: what either knows, the newer report winning conflicts (Zipkin's merge)."""
    annotations = list(old.annotations)
    annotations += [annotation for annotation in new.annotations if annotation not in annotations]
    return replace(
        old,
        name=new.name or old.name,
        parent_id=new.parent_id or old.parent_id,
        timestamp=new.timestamp or old.timestamp,
        duration=new.duration or old.duration,
        local_endpoint=_merge_endpoints(old.local_endpoint, new.local_endpoint) or Endpoint(),
        remote_endpoint=_merge_endpoints(old.remote_endpoint, new.remote_endpoint),
        tags={**old.tags, **new.tags},
        annotations=annotations,
        debug=old.debug or new.debug,
        shared=old.shared or new.shared,
    )


def _merge_endpoints(old: Endpoint | None, new: Endpoint | None) -> Endpoint | None:
    if old is None or new is None:
        return new or old
    return Endpoint(
        service_name=new.service_name or old.service_name,
        ipv4=new.ipv4 or old.ipv4,
        ipv6=new.ipv6 or old.ipv6,
        port=new.port or old.port,
    )


def _service_key(endpoint: Endpoint | None) -> str | None:
    if endpoint is None or not endpoint.service_name:
        return None
    return endpoint.service_name.lower()


def _count(index: dict[str, Counter[_K]], service: str, key: _K, delta: int) -> None:
    counts = index.setdefault(service, Counter())
    counts[key] += delta
    if counts[key] <= 0:
        del counts[key]
        if not counts:
            del index[service]

