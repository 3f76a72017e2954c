"""The collector store's byte bound counts what its spans take: its estimate (store.approximate_bytes) against what
tracemalloc counts it holding, for the spans `python -m bench.collector` sends."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from bench.collector import batches
from tracemesh_collector import zipkin_v2_json
from tracemesh_collector.store import SpanStore
from tracemesh_sidecar.spans import otlp, otlp_writer, zipkin_json

MB = 1024 * 1024


@pytest.mark.parametrize("codec", ["zipkin", "otlp"])
def test_the_bound_counts_what_the_stored_spans_take(codec: str) -> None:
    """Mesh-shaped spans decoded as the collector decodes them: every string its own copy until the store shares it."""
    encode, decode = ((zipkin_json.encode_spans, zipkin_v2_json.decode_spans) if codec == "zipkin"
                      else (otlp_writer.encode_request, otlp.decode_request_proto))
    bodies = [encode(batch) for batch in batches(0, 5000)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = SpanStore(max_spans=10_000, max_bytes=100 * MB)
        for body in bodies:
            store.add(decode(body))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert store.span_count == 5000
    assert 0.8 < store.byte_count / held < 1.25, (store.byte_count, held)
