"""Telemetry + MeshConfig -> one workload's tracing config. Pure and I/O-free."""

from tracemesh_operator.compiler.compile import compile_tracing
from tracemesh_operator.compiler.mesh import MeshTracing, read_mesh
from tracemesh_operator.compiler.model import CompiledTracing, Problem
from tracemesh_operator.compiler.telemetry import TelemetryRules, read_telemetry

__all__ = ["CompiledTracing", "MeshTracing", "Problem", "TelemetryRules", "compile_tracing", "read_mesh",
           "read_telemetry"]
