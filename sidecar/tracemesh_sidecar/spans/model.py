"""One finished span, shaped like a Zipkin v2 span: the unit every exporter and the collector handle.

Ids are lowercase hex strings (trace id 16 or 32 characters, span ids 16); times are
microseconds since the epoch, as Zipkin has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SpanKind = Literal["CLIENT", "SERVER", "PRODUCER", "CONSUMER"]


@dataclass(slots=True)
class Endpoint:
    service_name: str | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    port: int | None = None


@dataclass(slots=True)
class Annotation:
    timestamp: int
    value: str


@dataclass(slots=True)
class Span:
    trace_id: str
    id: str
    name: str
    kind: SpanKind | None
    timestamp: int
    duration: int
    local_endpoint: Endpoint
    parent_id: str | None = None
    remote_endpoint: Endpoint | None = None
    tags: dict[str, str] = field(default_factory=dict)
    annotations: list[Annotation] = field(default_factory=list)
    debug: bool = False
    shared: bool = False
