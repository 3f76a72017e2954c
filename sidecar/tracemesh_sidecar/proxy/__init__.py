"""The sidecar's data path: HTTP/1.x forwarding with tracing, on asyncio protocols and httptools."""

from tracemesh_sidecar.proxy.runtime import Exporters, ListenerError, Runtime

__all__ = ["Exporters", "ListenerError", "Runtime"]
