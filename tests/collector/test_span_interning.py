"""Stored spans share equal strings and endpoints, keep their values, and the sharing tables stay bounded."""

from __future__ import annotations

import copy

from collector_samples import NOW_US, bookinfo_trace, trace_id

from tracemesh_collector.span_interning import SpanInterner, otlp_attributes
from tracemesh_collector.store import SpanStore
from tracemesh_sidecar.spans import otlp, otlp_writer, zipkin_json
from tracemesh_sidecar.spans.model import Span


def test_equal_tags_and_endpoints_of_stored_spans_are_one_object_and_values_are_unchanged() -> None:
    first, second = bookinfo_trace(trace_id(1), NOW_US), bookinfo_trace(trace_id(2), NOW_US + 1)
    expected = copy.deepcopy([*first, *second])
    store = SpanStore()
    store.add(first)
    store.add(second)
    stored = {span.id: span for key in (trace_id(1), trace_id(2)) for span in store.get_trace(key)}
    assert sorted(stored.values(), key=lambda span: span.id) == sorted(expected, key=lambda span: span.id)
    a, b = stored[first[0].id], stored[second[0].id]  # the two roots: same service, name and status
    assert a.local_endpoint is b.local_endpoint
    assert a.name is b.name
    assert a.tags["http.status_code"] is b.tags["http.status_code"]
    assert next(iter(a.tags)) is next(iter(b.tags))


def test_a_high_cardinality_key_stops_being_shared_and_the_tables_stay_bounded() -> None:
    interner = SpanInterner(max_values_per_key=3, max_entries=10)
    spans = [span for number in range(30) for span in bookinfo_trace(trace_id(number), NOW_US + number)]
    for number, span in enumerate(spans):
        span.tags["guid:x-request-id"] = f"{number:08x}-1111-2222-3333-444455556666"
        before = (span.name, dict(span.tags), copy.copy(span.local_endpoint))
        interner.compact(span)
        assert (span.name, span.tags, span.local_endpoint) == before
    late = [span.tags["guid:x-request-id"] for span in spans[-20:]]
    assert len({id(value) for value in late}) == len(late)  # unique values were not shared past the cap
    shared_status = {id(span.tags["http.status_code"]) for span in spans}
    assert len(shared_status) == 1  # a low-cardinality key is still shared
    assert all(len(table) <= 10 for table in (interner._names, interner._tags, interner._endpoints))


def test_typed_otlp_attributes_keep_their_types() -> None:
    interner = SpanInterner()
    for value in (1, True, 1.0, "1"):
        [decoded] = otlp.decode_request_proto(otlp_writer.encode_request(bookinfo_trace(trace_id(3), NOW_US)[:1]))
        assert decoded.otlp is not None
        decoded.otlp.attributes["value"] = value
        expected = dict(decoded.otlp.attributes)
        interner.compact(decoded)
        attributes = otlp_attributes(decoded.otlp)
        assert attributes == expected and list(attributes) == list(expected)
        assert type(attributes["value"]) is type(value)


def test_an_otlp_span_keeps_only_the_attributes_its_tags_lack_and_shares_its_key_list() -> None:
    interner = SpanInterner()
    received = otlp.decode_request_proto(otlp_writer.encode_request(bookinfo_trace(trace_id(4), NOW_US)
                                                             + bookinfo_trace(trace_id(5), NOW_US + 1)))
    expected = [dict(span.otlp.attributes) for span in received if span.otlp is not None]
    for span in received:
        assert span.otlp is not None
        span.otlp.attributes["retries"] = 2
        interner.compact(span)
    details = [span.otlp for span in received if span.otlp is not None]
    assert [otlp_attributes(detail) for detail in details] == [{**attributes, "retries": 2} for attributes in expected]
    # what the tags hold as the same text is not kept twice: the integer is, and so are the addresses
    # the decoder moved from the tags to the span's endpoints
    for span, detail, attributes in zip(received, details, expected, strict=True):
        assert detail.attributes.keys() == {"retries"} | {key for key in attributes if key not in span.tags}
        assert "net.host.ip" in detail.attributes and "http.status_code" not in detail.attributes
    first, second = received[0].otlp, received[len(received) // 2].otlp  # the same hop of two traces
    assert first is not None and second is not None and first.attribute_keys is second.attribute_keys
    assert first.links is second.events and not first.links  # one empty list for every span without any


def _received_traces(count: int) -> list[list[Span]]:
    """Traces as a collector decodes them (every string its own copy), each with one request id on every span."""
    traces = []
    for number in range(count):
        sent = bookinfo_trace(trace_id(number), NOW_US + number)
        for span in sent:
            span.tags["guid:x-request-id"] = f"{number:08x}-1111-2222-3333-444455556666"
        traces.append(zipkin_json.decode_spans(zipkin_json.encode_spans(sent)))
    return traces


def test_what_a_trace_repeats_is_one_object_within_it() -> None:
    interner = SpanInterner(max_values_per_key=1)  # request ids are past their key's cap at once
    for spans in _received_traces(20):
        expected = copy.deepcopy(spans)
        for span in spans:
            interner.compact(span)
        assert spans == expected
        by_id = {span.id: span for span in spans}
        parents = [(span.parent_id, by_id[span.parent_id]) for span in spans
                   if span.parent_id is not None and span.parent_id in by_id]
        assert parents and all(parent_id is parent.id for parent_id, parent in parents)
        assert len({id(span.trace_id) for span in spans}) == 1
        assert len({id(span.tags["guid:x-request-id"]) for span in spans}) == 1


def test_the_table_of_strings_seen_lately_stays_bounded() -> None:
    interner = SpanInterner(max_values_per_key=1, max_recent=50)
    for spans in _received_traces(40):
        expected = copy.deepcopy(spans)
        for span in spans:
            interner.compact(span)
            assert len(interner._recent) <= 50
        assert spans == expected
