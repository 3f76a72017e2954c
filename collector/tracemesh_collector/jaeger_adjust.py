"""Jaeger's query-side adjuster for Zipkin-style shared span ids, so the Jaeger UI gets one span per id.

A port of jaegertracing/jaeger's DeduplicateClientServerSpanIDs
(cmd/jaeger/internal/extension/jaegerquery/internal/adjuster/spaniduniquifier.go, Apache-2.0), the first
of the adjusters Jaeger's query service applies: a SERVER span sharing its id with a CLIENT span gets
the lowest id not used in the trace (counting up from 1), the shared id becomes its parent, and the
spans whose parent was the shared id become its children. Zipkin's API keeps the ids as sent. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from tracemesh_sidecar.spans.model import Span

_MAX_SPAN_ID = 2**64 - 1


def deduplicate_client_server_span_ids(spans: Sequence[Span]) -> list[Span]:
    used = {span.id for span in spans}
    client_ids = {span.id for span in spans if span.kind == "CLIENT"}
    renamed: dict[str, str] = {}
    adjusted = []
    last_assigned = 0
    for span in spans:
        if span.kind == "SERVER" and span.id in client_ids:
            last_assigned = _next_unused(last_assigned, used)
            new_id = f"{last_assigned:016x}"
            used.add(new_id)
            renamed[span.id] = new_id
            span = replace(span, id=new_id, parent_id=span.id)  # the previously shared id is the new parent
        adjusted.append(span)
    return [replace(span, parent_id=renamed[span.parent_id])
            if span.parent_id in renamed and span.id != renamed[span.parent_id] else span
            for span in adjusted]


def _next_unused(after: int, used: set[str]) -> int:
    candidate = after + 1
    while f"{candidate:016x}" in used:
        candidate += 1
    if candidate > _MAX_SPAN_ID:  # 2^64 ids in one trace: not a trace anyone can send
        raise ValueError("cannot assign unique span ID, too many spans in the trace")
    return candidate
