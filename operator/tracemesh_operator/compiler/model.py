"""What a compile produces: the telemetry config of one workload and the problems met on the way."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tracemesh_sidecar.config import ProviderConfig, TracingConfig
from tracemesh_sidecar.config.fields import Fields
from tracemesh_sidecar.config.observability import AccessLogConfig, MetricsConfig

# Telemetry's WorkloadMode (`match.mode`) -> the directions of the workload's traffic a rule applies to.
MODES: Mapping[str, tuple[str, ...]] = {
    "CLIENT": ("client",),
    "SERVER": ("server",),
    "CLIENT_AND_SERVER": ("client", "server"),
}
DIRECTIONS = ("client", "server")


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


def optional_boolean(entry: Fields, key: str) -> bool | None:
    """A BoolValue: None when unset, which inherits the parent level's value; an explicit null counts as unset."""
    if not entry.has(key):
        entry.raw(key)
        return None
    return bool(entry.boolean(key))


class Rejected(Exception):
    """A Telemetry problem with its own status reason (ConfigError's are all InvalidTelemetry)."""

    def __init__(self, field: str, reason: str, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.field, self.reason, self.problem, self.fix = field, reason, problem, fix


@dataclass(frozen=True, slots=True)
class CompiledTelemetry:
    tracing: TracingConfig
    providers: tuple[ProviderConfig, ...]
    problems: tuple[Problem, ...]
    metrics: MetricsConfig
    access_logs: AccessLogConfig
