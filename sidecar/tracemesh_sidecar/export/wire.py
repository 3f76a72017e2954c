"""The request body each provider kind takes: Zipkin v2 JSON, or OTLP/HTTP protobuf for jaeger and opentelemetry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tracemesh_sidecar.config.model import ProviderKind
from tracemesh_sidecar.spans import otlp, zipkin_json
from tracemesh_sidecar.spans.model import Span


@dataclass(frozen=True, slots=True)
class WireFormat:
    content_type: str
    encode: Callable[[Sequence[Span]], bytes]


ZIPKIN_JSON = WireFormat("application/json", zipkin_json.encode_spans)
OTLP_PROTOBUF = WireFormat("application/x-protobuf", otlp.encode_request)


def wire_format(kind: ProviderKind) -> WireFormat:
    return ZIPKIN_JSON if kind == "zipkin" else OTLP_PROTOBUF
