"""Span export: bounded queues on the request path; batching and HTTP or OTLP/gRPC to collectors off it."""

from tracemesh_sidecar.export.exporter_set import ExporterSet
from tracemesh_sidecar.export.provider_exporter import ProviderExporter

__all__ = ["ExporterSet", "ProviderExporter"]
