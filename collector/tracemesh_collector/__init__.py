"""The embedded trace collector: Zipkin and OTLP ingest, Zipkin and Jaeger query APIs, over an in-memory store."""

from tracemesh_collector.server import ListenError, RunningCollector, run_collector
from tracemesh_collector.store import SpanStore

__all__ = ["ListenError", "RunningCollector", "SpanStore", "run_collector"]
