"""What a trace search asks for, and whether one trace answers it, with Zipkin's query semantics.

Pure: the store hands traces in, the HTTP layers build `TraceQuery` from their parameters.
Zipkin's rules: a trace's time is its root span's timestamp (else its earliest one) and must
fall inside `[end - lookback, end]`; `serviceName` picks the spans the other criteria are
tested against (a span belongs to a service through its local or its remote endpoint);
`spanName`, every `annotationQuery` term and the duration range must each be met by some
such span. Names compare case-insensitively, as Zipkin lowercases them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from tracemesh_sidecar.spans.model import Span

DEFAULT_LOOKBACK_US: Final = 86_400_000 * 1000  # Zipkin's default lookback: one day
DEFAULT_LIMIT: Final = 10


@dataclass(frozen=True, slots=True)
class TraceQuery:
    end_us: int
    lookback_us: int = DEFAULT_LOOKBACK_US
    service_name: str | None = None
    remote_service_name: str | None = None
    span_name: str | None = None
    # tag key -> required value; "" means only that the tag key (or an annotation value) be present
    annotation_query: Mapping[str, str] = field(default_factory=dict)
    min_duration_us: int | None = None
    max_duration_us: int | None = None
    limit: int = DEFAULT_LIMIT


def parse_annotation_query(text: str) -> dict[str, str]:
    """`error and http.status_code=500` -> {"error": "", "http.status_code": "500"} (Zipkin's syntax)."""
    terms: dict[str, str] = {}
    for term in text.split(" and "):
        key, _, value = term.strip().partition("=")
        if key:
            terms[key] = value
    return terms


def trace_timestamp(spans: Sequence[Span]) -> int:
    """The root span's timestamp, else the earliest known one; 0 when no span has a timestamp."""
    earliest = 0
    for span in spans:
        if not span.timestamp:
            continue
        if span.parent_id is None:
            return span.timestamp
        if not earliest or span.timestamp < earliest:
            earliest = span.timestamp
    return earliest


def in_window(timestamp_us: int, end_us: int, lookback_us: int) -> bool:
    return bool(timestamp_us) and end_us - lookback_us <= timestamp_us <= end_us


def matches(spans: Sequence[Span], query: TraceQuery) -> bool:
    """Whether this trace answers `query`, time window included."""
    if not in_window(trace_timestamp(spans), query.end_us, query.lookback_us):
        return False
    service = _lower(query.service_name)
    remote = _lower(query.remote_service_name)
    span_name = _lower(query.span_name)
    remaining = dict(query.annotation_query)
    service_found = service is None
    duration_found = query.min_duration_us is None and query.max_duration_us is None
    for span in spans:
        local_service = _lower(span.local_endpoint.service_name)
        remote_service = _lower(span.remote_endpoint.service_name if span.remote_endpoint else None)
        if service is not None and service not in (local_service, remote_service):
            continue
        service_found = True
        if remote is not None and remote == remote_service:
            remote = None
        if span_name is not None and span_name == span.name.lower():
            span_name = None
        if remaining:
            _strike_annotation_terms(span, remaining)
        if not duration_found:
            duration_found = _duration_in_range(span.duration, query.min_duration_us, query.max_duration_us)
    return service_found and remote is None and span_name is None and not remaining and duration_found


def _strike_annotation_terms(span: Span, remaining: dict[str, str]) -> None:
    for annotation in span.annotations:
        if remaining.get(annotation.value) == "":
            del remaining[annotation.value]
    tags = span.tags
    for key, wanted in list(remaining.items()):  # a lookup per term, not a pass over every tag
        value = tags.get(key)
        if value is not None and wanted in ("", value):
            del remaining[key]


def _duration_in_range(duration: int, minimum: int | None, maximum: int | None) -> bool:
    if not duration:
        return False
    return (minimum is None or duration >= minimum) and (maximum is None or duration <= maximum)


def _lower(name: str | None) -> str | None:
    return name.lower() if name else None
