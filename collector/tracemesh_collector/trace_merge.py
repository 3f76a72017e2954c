"""A trace's stored span reports as the spans they describe, merged exactly as Zipkin merges them.

A port of openzipkin/zipkin's `zipkin2.internal.Trace.merge` (zipkin/src/main/java/zipkin2/internal/Trace.java,
Apache-2.0), which Zipkin's UI and dependency linker apply to whatever storage returns, and of
`zipkin2.Span.Builder.merge` (zipkin/src/main/java/zipkin2/Span.java) for combining two reports:

- reports sort by span id, then unshared before shared (CLIENT first among unshared), then local
  endpoint (none first; service name, IPv4, IPv6, a missing value last);
- neighbours with the same id merge only when both are shared or both are not, and their local
  endpoints do not disagree (service name, IPv4, IPv6 and port each equal when both are known), so
  a shared SERVER span never merges into the caller's CLIENT span with the same id;
- a SERVER span following a CLIENT span with its id is marked shared, and a shared span with no
  parent takes the parent of the span before it;
- every span gets the longest trace id of the trace (a 64-bit id next to 128-bit ones).

Merging two reports: the first report's known fields win, tags are overwritten by the later
report, annotations are united (sorted, no repeats), debug and shared are or-ed. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from tracemesh_sidecar.spans.model import Endpoint, Span


def merge_trace(spans: Sequence[Span]) -> list[Span]:
    """The spans of one trace, reports of one span merged, in Zipkin's order (Trace.merge)."""
    result = sorted(spans, key=cleanup_order)
    if len(result) <= 1:
        return result
    trace_id = result[0].trace_id
    for span in result[1:]:
        if len(trace_id) != 32:
            trace_id = span.trace_id
    merged: list[Span] = []
    last: Span | None = None
    index = 0
    while index < len(result):
        span = result[index]
        index += 1
        if span.trace_id != trace_id:
            span = replace(span, trace_id=trace_id)
        known_endpoint: Endpoint | None = None
        while index < len(result) and result[index].id == span.id:
            following = result[index]
            if known_endpoint is None:
                known_endpoint = Endpoint()
                _try_merge_endpoint(known_endpoint, span.local_endpoint)
            if span.shared != following.shared or not _try_merge_endpoint(known_endpoint, following.local_endpoint):
                break
            span = merge_spans(span, following)
            index += 1
        if last is not None and last.id == span.id:
            # B3 once shared one id between client and server; backfill what such servers leave out
            if last.kind == "CLIENT" and span.kind == "SERVER" and not span.shared:
                span = replace(span, shared=True)
            if span.shared and span.parent_id is None and last.parent_id is not None:
                span = replace(span, parent_id=last.parent_id)
        merged.append(span)
        last = span
    return merged


def merge_spans(first: Span, later: Span) -> Span:
    """Two reports of one span as one (Span.Builder.merge): the first's known fields win, tags the later's."""
    annotations = sorted({(a.timestamp, a.value): a for a in [*first.annotations, *later.annotations]}.items())
    return replace(
        first,
        parent_id=first.parent_id or later.parent_id,
        kind=first.kind or later.kind,
        name=first.name or later.name,
        timestamp=first.timestamp or later.timestamp,
        duration=first.duration or later.duration,
        local_endpoint=merge_endpoints(first.local_endpoint, later.local_endpoint) or Endpoint(),
        remote_endpoint=merge_endpoints(first.remote_endpoint, later.remote_endpoint),
        tags={**first.tags, **later.tags},
        annotations=[annotation for _, annotation in annotations],
        debug=first.debug or later.debug,
        shared=first.shared or later.shared,
        otlp=first.otlp or later.otlp,
    )


def merge_endpoints(first: Endpoint | None, later: Endpoint | None) -> Endpoint | None:
    """Endpoint.Builder.merge: each field from `first` when it has one, else from `later`."""
    if first is None or later is None:
        return first or later
    return Endpoint(
        service_name=first.service_name or later.service_name,
        ipv4=first.ipv4 or later.ipv4,
        ipv6=first.ipv6 or later.ipv6,
        port=first.port or later.port,
    )


def _try_merge_endpoint(known: Endpoint, endpoint: Endpoint) -> bool:
    """Trace.EndpointTracker.tryMerge: whether `endpoint` can be the same local endpoint as what `known` holds of
    one span's reports so far (no field disagrees), filling `known` in when it can."""
    if endpoint == Endpoint():
        return True
    pairs = ((known.service_name, endpoint.service_name), (known.ipv4, endpoint.ipv4),
             (known.ipv6, endpoint.ipv6), (known.port, endpoint.port))
    if any(mine and theirs and mine != theirs for mine, theirs in pairs):
        return False
    known.service_name = known.service_name or endpoint.service_name
    known.ipv4 = known.ipv4 or endpoint.ipv4
    known.ipv6 = known.ipv6 or endpoint.ipv6
    known.port = known.port or endpoint.port
    return True


def cleanup_order(span: Span) -> tuple[object, ...]:
    """Trace.CLEANUP_COMPARATOR as a sort key: id, then shared last (CLIENT first when unshared), then endpoint."""
    sharing = 2 if span.shared else 0 if span.kind == "CLIENT" else 1
    endpoint = span.local_endpoint
    if endpoint == Endpoint():  # Zipkin has no empty endpoint: it is the null that sorts first
        return span.id, sharing, 0, ()
    # nullSafeCompareTo puts a missing value after every present one
    fields = tuple((value is None, value or "") for value in (endpoint.service_name, endpoint.ipv4, endpoint.ipv6))
    return span.id, sharing, 1, fields
