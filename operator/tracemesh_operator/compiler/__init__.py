"""Telemetry + MeshConfig -> one workload's tracing config. Pure and I/O-free."""

from tracemesh_operator.compiler.model import CompiledTracing, Problem

__all__ = ["CompiledTracing", "Problem"]
