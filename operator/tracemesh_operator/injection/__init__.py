"""Sidecar injection: the pure pod mutation, the admission webhook that serves it, and its certificates."""

from tracemesh_operator.injection.mutation import InjectionSettings, Mutation, Skip, inject

__all__ = ["InjectionSettings", "Mutation", "Skip", "inject"]
