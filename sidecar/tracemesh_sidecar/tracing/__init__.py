"""Pure tracing core: trace context formats, sampling, and building a span for one proxy hop."""

from tracemesh_sidecar.tracing.context import TRACE_HEADERS, ExtractResult, extract
from tracemesh_sidecar.tracing.facts import Direction, RequestFacts, ResponseFacts
from tracemesh_sidecar.tracing.hop import Hop, HopTracer
from tracemesh_sidecar.tracing.hosts import normalize_host
from tracemesh_sidecar.tracing.wire import TraceContext

__all__ = [
    "TRACE_HEADERS",
    "Direction",
    "ExtractResult",
    "Hop",
    "HopTracer",
    "RequestFacts",
    "ResponseFacts",
    "TraceContext",
    "extract",
    "normalize_host",
]
