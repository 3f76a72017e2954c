"""Zipkin v1 spans (the model behind `/api/v1/spans`) converted to v2 spans exactly as Zipkin converts them.

A port of openzipkin/zipkin's `zipkin2.v1.V1SpanConverter` (zipkin/src/main/java/zipkin2/v1/V1SpanConverter.java,
Apache-2.0): core annotations (cs, sr, ss, cr, ms, mr, ws, wr) become kind, timestamp and duration;
a v1 span that carries both sides of an RPC (cs and sr from different services) becomes two v2
spans, the server one `shared`; address annotations (ca, sa, ma) become remote endpoints; other
binary annotations become tags of the span of their endpoint's service. The readers for the v1
JSON and Thrift encodings (zipkin_v1_json, zipkin_v1_thrift) build `V1Span`s for it. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tracemesh_sidecar.spans.model import Annotation, Endpoint, Span, SpanKind


@dataclass(frozen=True, slots=True)
class V1Annotation:
    timestamp: int
    value: str
    endpoint: Endpoint | None = None


@dataclass(frozen=True, slots=True)
class V1BinaryAnnotation:
    """A tag (`value` set) or an address annotation (`value` None: ca, sa, ma with the address as endpoint)."""

    key: str
    value: str | None
    endpoint: Endpoint | None = None


@dataclass(slots=True)
class V1Span:
    trace_id: str  # 16 or 32 lower hex
    id: str
    name: str = ""
    parent_id: str | None = None
    timestamp: int = 0
    duration: int = 0
    annotations: list[V1Annotation] = field(default_factory=list)
    binary_annotations: list[V1BinaryAnnotation] = field(default_factory=list)
    debug: bool = False

    def __post_init__(self) -> None:
        # V1Span.Builder.build sorts both lists (V1Annotation by timestamp then value, binary ones by key)
        self.annotations.sort(key=lambda a: (a.timestamp, a.value))
        self.binary_annotations.sort(key=lambda b: b.key)


def empty_endpoint_as_none(endpoint: Endpoint | None) -> Endpoint | None:
    """V1Span.Builder drops an endpoint with nothing in it (EMPTY_ENDPOINT)."""
    return None if endpoint is None or endpoint == Endpoint() else endpoint


def convert_spans(sources: Sequence[V1Span]) -> list[Span]:
    return [span for source in sources for span in convert(source)]


def convert(source: V1Span) -> list[Span]:
    """One v1 span as the v2 spans it describes (V1SpanConverter.convert)."""
    conversion = _Conversion(source)
    conversion.process_annotations()
    conversion.process_binary_annotations()
    return [builder.build() for builder in conversion.builders]


@dataclass(slots=True)
class _Builder:
    """zipkin2.Span.Builder, as far as the converter uses it."""

    trace_id: str
    id: str
    name: str
    parent_id: str | None
    debug: bool
    kind: SpanKind | None = None
    timestamp: int = 0
    duration: int = 0
    local_endpoint: Endpoint | None = None
    remote_endpoint: Endpoint | None = None
    annotations: list[Annotation] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    shared: bool = False

    def build(self) -> Span:
        # Span.build sorts annotations and drops repeats
        annotations = sorted({(a.timestamp, a.value): a for a in self.annotations}.items())
        return Span(trace_id=self.trace_id, id=self.id, name=self.name, kind=self.kind, timestamp=self.timestamp,
                    duration=self.duration, local_endpoint=self.local_endpoint or Endpoint(),
                    parent_id=self.parent_id, remote_endpoint=self.remote_endpoint, tags=self.tags,
                    annotations=[annotation for _, annotation in annotations], debug=self.debug,
                    shared=self.shared)


class _Conversion:
    def __init__(self, source: V1Span) -> None:
        self.source = source
        self.builders = [self._new_builder(None)]
        self.cs: V1Annotation | None = None
        self.sr: V1Annotation | None = None
        self.ss: V1Annotation | None = None
        self.cr: V1Annotation | None = None
        self.ms: V1Annotation | None = None
        self.mr: V1Annotation | None = None
        self.ws: V1Annotation | None = None
        self.wr: V1Annotation | None = None

    def process_annotations(self) -> None:
        source = self.source
        for annotation in source.annotations:
            current = self._for_endpoint(annotation.endpoint)
            value = annotation.value
            # core annotations require an endpoint; without one they are ordinary annotations
            if len(value) == 2 and annotation.endpoint is not None and value in _CORE:
                kind = _CORE[value]
                if kind is not None:
                    current.kind = kind
                setattr(self, value, annotation)
            else:
                current.annotations.append(Annotation(annotation.timestamp, value))

        # when bridging between event and span model, a start annotation can be missing
        if self.cs is None and self._end_reflects_duration(self.cr):
            assert self.cr is not None
            self.cs = V1Annotation(source.timestamp, "cs", self.cr.endpoint)
        if self.sr is None and self._end_reflects_duration(self.ss):
            assert self.ss is not None
            self.sr = V1Annotation(source.timestamp, "sr", self.ss.endpoint)

        cs, sr, ss, cr = self.cs, self.sr, self.ss, self.cr
        if cs is not None and sr is not None:
            # in a shared span, the client side owns span duration by annotations or explicit timestamp
            self._maybe_timestamp_duration(cs, cr)
            client = self._for_endpoint(cs.endpoint)
            if _same_service(cs.endpoint, sr.endpoint):
                client.kind = "CLIENT"
                server = self._new_builder(sr.endpoint)  # loopback: fork a span for the server side
                server.kind = "SERVER"
            else:
                server = self._for_endpoint(sr.endpoint)
            server.shared = True
            server.timestamp = sr.timestamp
            if ss is not None:
                server.duration = ss.timestamp - sr.timestamp
            if cr is None and source.duration == 0:
                client.duration = 0  # one-way has no duration
        elif cs is not None and cr is not None:
            self._maybe_timestamp_duration(cs, cr)
        elif sr is not None and ss is not None:
            self._maybe_timestamp_duration(sr, ss)
        else:  # the span is incomplete: revert special-casing
            self._handle_incomplete_rpc()

        # v1 had no shared flag: an absent timestamp on a server-only span implied it
        if cs is None and sr is not None and (source.timestamp == 0 or (ss is not None and source.duration == 0)):
            self._for_endpoint(sr.endpoint).shared = True

        self._process_messaging()

    def _process_messaging(self) -> None:
        ms, mr, ws, wr = self.ms, self.mr, self.ws, self.wr
        if ms is not None and mr is not None:
            producer = self._for_endpoint(ms.endpoint)
            if _same_service(ms.endpoint, mr.endpoint):
                producer.kind = "PRODUCER"
                consumer = self._new_builder(mr.endpoint)
                consumer.kind = "CONSUMER"
            else:
                consumer = self._for_endpoint(mr.endpoint)
            consumer.shared = True
            if wr is not None:
                consumer.timestamp, consumer.duration = wr.timestamp, mr.timestamp - wr.timestamp
            else:
                consumer.timestamp = mr.timestamp
            producer.timestamp = ms.timestamp
            producer.duration = ws.timestamp - ms.timestamp if ws is not None else 0
        elif ms is not None:
            self._maybe_timestamp_duration(ms, ws)
        elif mr is not None:
            if wr is not None:
                self._maybe_timestamp_duration(wr, mr)
            else:
                self._maybe_timestamp_duration(mr, None)
        else:
            for marker in (ws, wr):
                if marker is not None:
                    self._for_endpoint(marker.endpoint).annotations.append(Annotation(marker.timestamp, marker.value))

    def _handle_incomplete_rpc(self) -> None:
        for builder in self.builders:
            if builder.kind == "CLIENT":
                if self.cs is not None:
                    builder.timestamp = self.cs.timestamp
                if self.cr is not None:
                    builder.annotations.append(Annotation(self.cr.timestamp, self.cr.value))
            elif builder.kind == "SERVER":
                if self.sr is not None:
                    builder.timestamp = self.sr.timestamp
                if self.ss is not None:
                    builder.annotations.append(Annotation(self.ss.timestamp, self.ss.value))
        if self.source.timestamp:
            self.builders[0].timestamp, self.builders[0].duration = self.source.timestamp, self.source.duration

    def _end_reflects_duration(self, end: V1Annotation | None) -> bool:
        source = self.source
        return (end is not None and source.timestamp != 0 and source.duration != 0
                and source.timestamp + source.duration == end.timestamp)

    def _maybe_timestamp_duration(self, begin: V1Annotation, end: V1Annotation | None) -> None:
        span = self._for_endpoint(begin.endpoint)
        if self.source.timestamp and self.source.duration:
            span.timestamp, span.duration = self.source.timestamp, self.source.duration
        else:
            span.timestamp = begin.timestamp
            if end is not None:
                span.duration = end.timestamp - begin.timestamp

    def process_binary_annotations(self) -> None:
        ca = sa = ma = None
        for binary in self.source.binary_annotations:
            # lenient: an address annotation is recognized by its key whatever its value
            if binary.key == "ca":
                ca = binary.endpoint
                continue
            if binary.key == "sa":
                sa = binary.endpoint
                continue
            if binary.key == "ma":
                ma = binary.endpoint
                continue
            current = self._for_endpoint(binary.endpoint)
            if binary.value is None or (binary.key == "lc" and not binary.value):
                continue  # no "lc" marker tags
            current.tags[binary.key] = binary.value

        cs, sr, ss, cr = self.cs, self.sr, self.ss, self.cr
        if cs is None and cr is None and ss is None and sr is None and (ca is not None or sa is not None):
            # no core annotations but addresses: they say which side this is
            if ca is not None and sa is not None:
                self._for_endpoint(ca).remote_endpoint = sa
            elif sa is not None:
                self._for_endpoint(None).remote_endpoint = sa  # "sa" is a default remote address: not a client
            else:
                server = self._for_endpoint(None)
                server.kind, server.remote_endpoint = "SERVER", ca
            return

        server_annotation = sr if sr is not None else ss
        if ca is not None and server_annotation is not None and ca != server_annotation.endpoint:
            # Finagle adds "ca" with the server's own service name: drop it so no loopback link appears
            if _same_service(ca, server_annotation.endpoint):
                ca = Endpoint(None, ca.ipv4, ca.ipv6, ca.port)
            self._for_endpoint(server_annotation.endpoint).remote_endpoint = ca
        if sa is not None:
            if cs is not None:
                self._for_endpoint(cs.endpoint).remote_endpoint = sa
            elif cr is not None:
                self._for_endpoint(cr.endpoint).remote_endpoint = sa
        if ma is not None:
            # both sides get the broker's address, in case a messaging span was shared by accident
            if self.ms is not None:
                self._for_endpoint(self.ms.endpoint).remote_endpoint = ma
            if self.mr is not None:
                self._for_endpoint(self.mr.endpoint).remote_endpoint = ma

    def _for_endpoint(self, endpoint: Endpoint | None) -> _Builder:
        if endpoint is None:
            return self.builders[0]  # data with no endpoint goes to the first span
        for builder in self.builders:
            if builder.local_endpoint is None:
                builder.local_endpoint = endpoint
                return builder
            if _same_service(builder.local_endpoint, endpoint):
                return builder
        return self._new_builder(endpoint)

    def _new_builder(self, endpoint: Endpoint | None) -> _Builder:
        source = self.source
        builder = _Builder(trace_id=source.trace_id, id=source.id, name=source.name, parent_id=source.parent_id,
                           debug=source.debug, local_endpoint=endpoint)
        if endpoint is not None:
            self.builders.append(builder)
        return builder


_CORE: dict[str, SpanKind | None] = {"cs": "CLIENT", "sr": "SERVER", "ss": "SERVER", "cr": "CLIENT",
                                     "ms": "PRODUCER", "mr": "CONSUMER", "ws": None, "wr": None}


def _same_service(left: Endpoint | None, right: Endpoint | None) -> bool:
    return (left.service_name if left else None) == (right.service_name if right else None)
