"""One finished span, shaped like a Zipkin v2 span: the unit every exporter and the collector handle.

Ids are lowercase hex strings (trace id 16 or 32 characters, span ids 16); times are
microseconds since the epoch, as Zipkin has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tracemesh_sidecar.native_dataclasses import rebuilt_from_fields

SpanKind = Literal["CLIENT", "SERVER", "PRODUCER", "CONSUMER"]
# An OTLP attribute value with its type (string, bool, int64, float64, bytes); arrays and maps arrive as JSON text.
AttributeValue = str | bool | int | float | bytes

# The classes built once per span (Endpoint, Annotation, Span, and an OTLP span's OtlpDetail) write their
# `__init__` out, which mypyc compiles (a compiled Span took ~600 ns to build with the one @dataclass generates, ~60
# with its own), and rebuild from their fields for copy and pickle (native_dataclasses.py says why).


@dataclass(slots=True)
class Endpoint:
    service_name: str | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    port: int | None = None

    def __init__(self, service_name: str | None = None, ipv4: str | None = None, ipv6: str | None = None,
                 port: int | None = None) -> None:
        self.service_name = service_name
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.port = port

    def __reduce__(self) -> tuple[type[Any], tuple[object, ...]]:
        return rebuilt_from_fields(self)


@dataclass(slots=True)
class Annotation:
    timestamp: int
    value: str

    def __init__(self, timestamp: int, value: str) -> None:
        self.timestamp = timestamp
        self.value = value

    def __reduce__(self) -> tuple[type[Any], tuple[object, ...]]:
        return rebuilt_from_fields(self)


@dataclass(slots=True)
class OtlpLink:
    trace_id: str
    span_id: str
    attributes: dict[str, AttributeValue] = field(default_factory=dict)


@dataclass(slots=True)
class OtlpEvent:
    timestamp: int
    name: str
    attributes: dict[str, AttributeValue] = field(default_factory=dict)


@dataclass(slots=True)
class OtlpDetail:
    """What an OTLP span says that a Zipkin span cannot hold, kept so the collector's Jaeger API can show it.

    Only the OTLP decoder fills it; exporters ignore it. `resource` holds the resource attributes
    other than service.name (spans of one resource share the dict); `attributes` the span's own.
    """

    resource: dict[str, AttributeValue] = field(default_factory=dict)
    scope_name: str = ""
    scope_version: str = ""
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    links: list[OtlpLink] = field(default_factory=list)
    events: list[OtlpEvent] = field(default_factory=list)
    status_code: int = 0  # Status.StatusCode: 0 unset, 1 ok, 2 error
    status_message: str = ""
    trace_state: str = ""
    internal: bool = False  # SPAN_KIND_INTERNAL, which Zipkin's model writes as no kind
    flags: int = 0  # Span.flags (W3C trace flags and more)
    # The collector's compact form (tracemesh_collector.span_interning), never set by the decoder: every attribute
    # key in order, and the tags of the report (`attribute_tags`) that hold the text values `attributes` then omits.
    attribute_keys: tuple[str, ...] | None = None
    attribute_tags: dict[str, str] | None = None

    # Built once per OTLP span the collector takes in: the generated __init__, interpreted, was ~6k instructions of
    # an OTLP span's decode (callgrind), a twentieth of it.
    def __init__(self, resource: dict[str, AttributeValue] | None = None, scope_name: str = "",
                 scope_version: str = "", attributes: dict[str, AttributeValue] | None = None,
                 links: list[OtlpLink] | None = None, events: list[OtlpEvent] | None = None, status_code: int = 0,
                 status_message: str = "", trace_state: str = "", internal: bool = False, flags: int = 0,
                 attribute_keys: tuple[str, ...] | None = None, attribute_tags: dict[str, str] | None = None) -> None:
        self.resource = {} if resource is None else resource
        self.scope_name = scope_name
        self.scope_version = scope_version
        self.attributes = {} if attributes is None else attributes
        self.links = [] if links is None else links
        self.events = [] if events is None else events
        self.status_code = status_code
        self.status_message = status_message
        self.trace_state = trace_state
        self.internal = internal
        self.flags = flags
        self.attribute_keys = attribute_keys
        self.attribute_tags = attribute_tags

    def __reduce__(self) -> tuple[type[Any], tuple[object, ...]]:
        return rebuilt_from_fields(self)


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
    # set on spans decoded from OTLP; not compared: two spans are equal when their Zipkin fields are
    otlp: OtlpDetail | None = field(default=None, compare=False)

    def __init__(self, trace_id: str, id: str, name: str, kind: SpanKind | None, timestamp: int, duration: int,
                 local_endpoint: Endpoint, parent_id: str | None = None, remote_endpoint: Endpoint | None = None,
                 tags: dict[str, str] | None = None, annotations: list[Annotation] | None = None,
                 debug: bool = False, shared: bool = False, otlp: OtlpDetail | None = None) -> None:
        self.trace_id = trace_id
        self.id = id
        self.name = name
        self.kind = kind
        self.timestamp = timestamp
        self.duration = duration
        self.local_endpoint = local_endpoint
        self.parent_id = parent_id
        self.remote_endpoint = remote_endpoint
        self.tags = {} if tags is None else tags
        self.annotations = [] if annotations is None else annotations
        self.debug = debug
        self.shared = shared
        self.otlp = otlp

    def __reduce__(self) -> tuple[type[Any], tuple[object, ...]]:
        return rebuilt_from_fields(self)
