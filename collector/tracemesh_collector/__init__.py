"""The embedded trace collector: Zipkin and OTLP ingest, Zipkin and Jaeger query APIs, over an in-memory store."""

# First: the sidecar package selects the build, compiled or pure, for its modules and this package's at once
# (tracemesh_sidecar/build.py); a compiled module of this package imported before would not follow it.
import tracemesh_sidecar  # noqa: F401
from tracemesh_collector.server import ListenError, RunningCollector, run_collector
from tracemesh_collector.store import SpanStore

__all__ = ["ListenError", "RunningCollector", "SpanStore", "run_collector"]
