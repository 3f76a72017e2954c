"""Telemetry + MeshConfig -> one workload's tracing config. Pure and I/O-free."""

from tracemesh_operator.compiler.compile import compile_telemetry
from tracemesh_operator.compiler.mesh import MeshTracing, read_mesh
from tracemesh_operator.compiler.model import CompiledTelemetry, Problem
from tracemesh_operator.compiler.telemetry import TelemetryRules, read_telemetry

__all__ = ["CompiledTelemetry", "MeshTracing", "Problem", "TelemetryRules", "compile_telemetry", "read_mesh",
           "read_telemetry"]
