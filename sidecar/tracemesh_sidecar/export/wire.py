"""What goes on the wire per provider: Zipkin v2 JSON, or an OTLP ExportTraceServiceRequest (jaeger and
opentelemetry, over HTTP or gRPC) carrying the provider's detected resource attributes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from tracemesh_sidecar.config.model import ProviderConfig
from tracemesh_sidecar.spans import otlp, otlp_writer, zipkin_json
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.spans.otlp import ACCEPTED_WHOLE, PartialSuccess
from tracemesh_sidecar.spans.resource import detect_resource


@dataclass(frozen=True, slots=True)
class WireFormat:
    content_type: str  # of an HTTP request body
    encode: Callable[[Sequence[Span]], bytes]
    # What an accepted export's answer says was rejected all the same (OTLP's partial success).
    partial_success: Callable[[bytes], PartialSuccess]


ZIPKIN_JSON = WireFormat("application/json", zipkin_json.encode_spans, lambda _: ACCEPTED_WHOLE)


def wire_format(provider: ProviderConfig, environ: Mapping[str, str]) -> WireFormat:
    """The provider's format; `environ` is the proxy's environment, read by the `environment` resource detector."""
    if provider.kind == "zipkin":
        return ZIPKIN_JSON
    resource = detect_resource(provider.resource_detectors, environ)
    return WireFormat("application/x-protobuf", partial(otlp_writer.encode_request, resource=resource),
                      otlp.decode_partial_success)
