"""The store's time index answers every search exactly as a scan of every trace does (same traces, same order).

The reference below is the scan the index replaced (merge every trace, keep those in the window,
sort by timestamp then trace key, newest first, test each against the query, stop at the limit);
randomized stores with duplicate and partial reports, shared ids, 64-bit ids beside 128-bit ones,
untimed spans and evictions are queried through both.
"""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace

import pytest

from tracemesh_collector import store as store_module
from tracemesh_collector.dependencies import link_traces
from tracemesh_collector.query import TraceQuery, in_window, matches, trace_timestamp
from tracemesh_collector.store import SpanStore
from tracemesh_collector.term_index import TermIndex
from tracemesh_collector.trace_index import EVERY_TRACE, TraceIndex
from tracemesh_sidecar.spans.model import Annotation, Endpoint, Span

SERVICES = ["productpage.default", "Reviews.default", "ratings.default", "details.default", ""]
NAMES = ["get /", "GET /reviews", "ratings.default.svc.cluster.local:9080/*", ""]
BASE_US = 1_763_700_000_000_000


def scanned(store: SpanStore, trace_keys: set[str], query: TraceQuery) -> list[list[Span]]:
    """The search as a scan of every held trace: what the store answered before it had an index."""
    candidates = []
    for key in trace_keys:
        spans = store.get_trace(key)
        timestamp = trace_timestamp(spans)
        if spans and in_window(timestamp, query.end_us, query.lookback_us):
            candidates.append((timestamp, key, spans))
    candidates.sort(key=lambda candidate: candidate[:2], reverse=True)
    return [spans for _, _, spans in candidates if matches(spans, query)][:query.limit]


def random_span(rng: random.Random, trace_key: str, span_ids: list[str]) -> Span:
    if span_ids and rng.random() < 0.25:  # another report of a span already reported: merged at query time
        span_id = rng.choice(span_ids)
    else:
        span_id = f"{rng.getrandbits(64):016x}"
        span_ids.append(span_id)
    trace_id = trace_key if rng.random() < 0.2 else f"{rng.getrandbits(64):016x}{trace_key}"
    remote = rng.choice(SERVICES) if rng.random() < 0.5 else None
    tags = {"http.status_code": rng.choice(["200", "503"])}
    if rng.random() < 0.3:
        tags["error"] = "true"
    if rng.random() < 0.3:
        tags["user"] = rng.choice(["ana", "bo", "cy", "di", "ed", "flo", "gus"])
    return Span(
        trace_id=trace_id, id=span_id, name=rng.choice(NAMES), kind=rng.choice(["CLIENT", "SERVER", None]),
        timestamp=0 if rng.random() < 0.1 else BASE_US + rng.randrange(0, 1_000_000),
        duration=rng.choice([0, 10, 500, 20_000]),
        local_endpoint=Endpoint(rng.choice(SERVICES), rng.choice(["10.0.0.1", None])),
        parent_id=None if rng.random() < 0.4 else f"{rng.getrandbits(64):016x}",
        remote_endpoint=Endpoint(remote, port=9080) if remote is not None else None,
        tags=tags, annotations=[Annotation(BASE_US, "retry")] if rng.random() < 0.1 else [],
        shared=rng.random() < 0.15)


def random_batches(rng: random.Random, rounds: int, traces: int) -> Iterator[tuple[list[Span], set[str]]]:
    """`rounds` batches of random spans of up to `traces` traces; with each, the trace keys reported so far."""
    trace_keys: set[str] = set()
    span_ids: dict[str, list[str]] = {}
    for _ in range(rounds):
        batch = []
        for _ in range(rng.randrange(1, 12)):
            trace_key = f"{rng.randrange(0, traces):016x}"
            trace_keys.add(trace_key)
            batch.append(random_span(rng, trace_key, span_ids.setdefault(trace_key, [])))
        yield batch, trace_keys


def random_query(rng: random.Random) -> TraceQuery:
    annotation_query = rng.choice([{}, {}, {"error": ""}, {"http.status_code": "503"}, {"retry": ""},
                                   {"user": rng.choice(["ana", "ed", "zed"])}, {"user": ""}, {"nothing": ""},
                                   {"http.status_code": "404"}, {"error": "", "user": "bo"}])
    return TraceQuery(
        end_us=BASE_US + rng.randrange(0, 1_200_000), lookback_us=rng.choice([86_400_000_000, 300_000, 50_000]),
        service_name=rng.choice([None, *(service.upper() for service in SERVICES)]),
        remote_service_name=rng.choice([None, None, *SERVICES[:3]]),
        span_name=rng.choice([None, None, *(name.upper() for name in NAMES)]),
        annotation_query=annotation_query,
        min_duration_us=rng.choice([None, None, 100]), max_duration_us=rng.choice([None, None, 1_000]),
        limit=rng.choice([1, 3, 10, 1000]))


# The term index's own bounds, default and tiny: common terms, high-cardinality keys and a full table are walked.
TERM_INDEXES = [{}, {"max_postings": 4, "max_values_per_key": 3, "max_terms": 8}, {"max_postings": 2}]


@pytest.mark.parametrize("seed", range(18))
def test_the_index_answers_as_the_scan_does(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    if seed % 2:  # common terms are listed again after any walk that did not fill its limit
        monkeypatch.setattr(store_module, "RELIST_AFTER_WALKING", 1)
    rng = random.Random(seed)
    store = SpanStore(max_spans=rng.choice([60, 400, 10_000]), term_index=TermIndex(**TERM_INDEXES[seed % 3]))
    for batch, trace_keys in random_batches(rng, rounds=40, traces=60):
        store.add(batch)
        held = {key for key in trace_keys if store.get_trace(key)}
        for _ in range(10):
            query = random_query(rng)
            assert store.find_traces(query) == scanned(store, held, query), query


def test_a_trace_whose_root_arrives_late_moves_to_the_roots_time() -> None:
    child = Span(trace_id="00000000000000aa", id="0000000000000002", name="get", kind="SERVER",
                 timestamp=BASE_US + 500, duration=10, local_endpoint=Endpoint("a"), parent_id="0000000000000001")
    root = replace(child, id="0000000000000001", parent_id=None, timestamp=BASE_US + 900)
    store = SpanStore()
    store.add([child])
    window_before_root = TraceQuery(end_us=BASE_US + 600, lookback_us=200, service_name="a")
    assert len(store.find_traces(window_before_root)) == 1
    store.add([root])
    assert store.find_traces(window_before_root) == []  # the trace's time is its root's now
    assert len(store.find_traces(replace(window_before_root, end_us=BASE_US + 1000))) == 1


def test_an_evicted_trace_leaves_every_index() -> None:
    store = SpanStore(max_spans=1)
    first = Span(trace_id="00000000000000aa", id="0000000000000001", name="get", kind="SERVER",
                 timestamp=BASE_US, duration=10, local_endpoint=Endpoint("a"), remote_endpoint=Endpoint("b"))
    store.add([first])
    store.add([replace(first, trace_id="00000000000000bb", timestamp=BASE_US + 1, local_endpoint=Endpoint("c"),
                       remote_endpoint=None)])
    for service in ("a", "b"):
        assert store.find_traces(TraceQuery(end_us=BASE_US + 10, service_name=service, span_name="get")) == []
    assert [spans[0].trace_id for spans in store.find_traces(TraceQuery(end_us=BASE_US + 10))] == ["00000000000000bb"]


def test_an_error_burst_since_evicted_is_searched_from_its_list_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "RELIST_AFTER_WALKING", 2)
    store = SpanStore(max_spans=6, term_index=TermIndex(max_postings=4))

    def span(number: int, tags: dict[str, str]) -> Span:
        return Span(trace_id=f"{number:016x}", id=f"{number:016x}", name="get", kind="SERVER",
                    timestamp=BASE_US + number, duration=10, local_endpoint=Endpoint("a"), tags=tags)

    store.add([span(number, {"error": "true"}) for number in range(6)])  # a burst: "error" becomes common
    store.add([span(number, {}) for number in range(6, 11)] + [span(11, {"error": "true"})])  # burst evicted
    query = TraceQuery(end_us=BASE_US + 100, annotation_query={"error": ""})
    assert [spans[0].id for spans in store.find_traces(query)] == [f"{11:016x}"]  # a walk, then listed again
    assert store._term_index.candidates(["error"], lambda key: True) == {f"{11:016x}"}
    store.add([span(12, {"error": "true"})])
    assert [spans[0].id for spans in store.find_traces(query)] == [f"{12:016x}", f"{11:016x}"]


@pytest.mark.parametrize("seed", range(12))
def test_dependency_links_are_those_of_a_pass_over_every_trace_in_the_window(seed: int) -> None:
    """Traces over six seconds, changed, merged and evicted between asks; windows at and across second edges."""
    rng = random.Random(seed)
    store = SpanStore(max_spans=rng.choice([40, 300, 10_000]))
    for batch, trace_keys in random_batches(rng, rounds=30, traces=50):
        for span in batch:
            if span.timestamp:
                span.timestamp = BASE_US + rng.choice([0, 1, 999_999, 1_000_000]) + rng.randrange(0, 5) * 1_000_000
        store.add(batch)
        held = [spans for spans in map(store.get_trace, trace_keys) if spans]
        for _ in range(6):
            end_us = BASE_US + rng.choice([0, 1, 999_999, 1_000_000, 1_500_000]) + rng.randrange(0, 6) * 1_000_000
            lookback_us = rng.choice([0, 1, 999_999, 1_000_000, 1_000_001, 2_500_000, 10_000_000])
            expected = link_traces(spans for spans in held
                                   if in_window(trace_timestamp(spans), end_us, lookback_us))
            assert store.dependencies(end_us, lookback_us) == expected, (end_us - BASE_US, lookback_us)


def test_a_walk_takes_the_newest_traces_without_listing_the_window_first() -> None:
    """A search that stops at its limit must not pay for the whole window: the walk is lazy. Measured in what it
    allocates (a list of the window's 100 000 keys is ~800 KB), since a compiled build once turned the walk into
    such a list and a search at a million spans took 17 ms for its 10 traces."""
    index = TraceIndex()
    for number in range(100_000):
        index.update(f"{number:016x}", [EVERY_TRACE, ("ratings", "")], 1_000_000 + number)
    tracemalloc.start()
    try:
        walk = index.newest(("ratings", ""), 0, 10**12)
        newest = [next(walk) for _ in range(10)]
        allocated = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert newest == [f"{number:016x}" for number in range(99_999, 99_989, -1)]
    assert allocated < 100_000, allocated
