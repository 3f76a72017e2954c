"""What a compile produces: the tracing config of one workload and the problems met on the way."""

from __future__ import annotations

from dataclasses import dataclass

from tracemesh_sidecar.config import ProviderConfig, TracingConfig


@dataclass(frozen=True, slots=True)
class Problem:
    """A user error in one resource; the compile ignores that resource and goes on.

    `resource` is `kind namespace/name` (or `kind name` for cluster-wide objects), `field` the
    dotted path inside it, `reason` a CamelCase word for a status condition's `reason`.
    """

    resource: str
    field: str
    reason: str
    problem: str
    fix: str

    @property
    def message(self) -> str:
        """One line for a status condition or an Event: where, what, and what to do."""
        return f"{self.field}: {self.problem}; {self.fix}"

    def __str__(self) -> str:
        return f"{self.resource}: {self.message}"


@dataclass(frozen=True, slots=True)
class CompiledTracing:
    tracing: TracingConfig
    providers: tuple[ProviderConfig, ...]
    problems: tuple[Problem, ...] = ()
