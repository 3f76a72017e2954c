"""The tracemesh sidecar: a tracing HTTP proxy, its config model and its exporters."""
