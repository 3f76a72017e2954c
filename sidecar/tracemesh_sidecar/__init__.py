"""The tracemesh sidecar: a tracing HTTP proxy, its config model and its exporters."""

from pathlib import Path

from tracemesh_sidecar.build import select

# Before any other module of the package is imported: the compiled request path, or pure Python (build.py).
BUILD = select(Path(__file__).parent)
