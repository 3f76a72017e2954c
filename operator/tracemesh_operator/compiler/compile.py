"""The Telemetry hierarchy for one workload: root namespace -> namespace -> workload selector.

Tracing: each level overrides its parent field by field (customTags whole); a `tracing[]` rule applies to
the directions its `match.mode` names. Metrics and access logs merge as Istio merges them (metrics.py,
access_logging.py). A resource with a problem is left out and reported, so one broken Telemetry never
takes the others down with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tracemesh_operator.compiler.access_logging import merge_access_logs
from tracemesh_operator.compiler.gateway_api import GATEWAY_NAME_LABEL
from tracemesh_operator.compiler.mesh import NO_ENVIRONMENT, MeshTracing, read_mesh
from tracemesh_operator.compiler.metrics import merge_metrics
from tracemesh_operator.compiler.model import CompiledTelemetry, Problem
from tracemesh_operator.compiler.telemetry import TelemetryRules, object_identity, read_telemetry
from tracemesh_sidecar.config import ProviderConfig, TracingConfig, TracingPolicy

LEVELS = ("root", "namespace", "workload")


def compile_telemetry(mesh_spec: Mapping[str, Any], telemetries: Sequence[Mapping[str, Any]], namespace: str,
                      labels: Mapping[str, str], environ: Mapping[str, str] = NO_ENVIRONMENT) -> CompiledTelemetry:
    """The tracing, metrics and access log config of a workload in `namespace` with `labels`; `telemetries` may
    hold any namespaces'.

    `environ` is the operator's environment, where provider headers' `envName`s are read (istiod reads its own).
    """
    mesh = read_mesh(mesh_spec, environ)
    problems = list(mesh.problems)
    candidates: dict[str, list[TelemetryRules]] = {level: [] for level in LEVELS}
    for obj in telemetries:
        if object_identity(obj)[0] not in (mesh.root_namespace, namespace):
            continue
        read = read_telemetry(obj, mesh)
        if isinstance(read, Problem):
            problems.append(read)
        elif (level := _level(read, mesh.root_namespace, namespace, labels)) is not None:
            candidates[level].append(read)
    chosen: list[TelemetryRules] = []
    for level in LEVELS:
        winner, conflicts = pick_oldest(candidates[level])
        chosen.extend([winner] if winner else [])
        problems.extend(conflict_problem(loser, winner, level) for loser in conflicts if winner)
    return _merge(mesh, chosen, tuple(problems))


def _level(telemetry: TelemetryRules, root_namespace: str, namespace: str, labels: Mapping[str, str]) -> str | None:
    if telemetry.targeted:
        # policyattachment.go: a targetRef attaches to the pods of the Gateway API Gateway it names, in its namespace.
        gateway = labels.get(GATEWAY_NAME_LABEL)
        return ("workload" if gateway is not None and telemetry.namespace == namespace
                and gateway in telemetry.target_gateways else None)
    if telemetry.selector is None:
        return "root" if telemetry.namespace == root_namespace else "namespace"
    # Istio applies a selector only within the Telemetry's own namespace, the root namespace included.
    return "workload" if telemetry.namespace == namespace and telemetry.selects(labels) else None


def pick_oldest(candidates: Sequence[TelemetryRules]) -> tuple[TelemetryRules | None, list[TelemetryRules]]:
    """Istio's tie-break: the oldest resource (then the first by name) applies, the others conflict."""
    ordered = sorted(candidates, key=lambda t: (t.created, t.name))
    return (ordered[0] if ordered else None), ordered[1:]


def conflict_problem(loser: TelemetryRules, winner: TelemetryRules, level: str) -> Problem:
    if level == "workload":
        return Problem(loser.resource, "spec.selector", "ConflictingSelector",
                       f"selects a workload that {winner.resource} (older) already selects, so it is ignored there",
                       "merge the two into one Telemetry or make their selectors select different workloads")
    return Problem(loser.resource, "spec.selector", "ConflictingTelemetry",
                   f"is a second Telemetry without a selector in namespace {loser.namespace}; "
                   f"{winner.resource} (older) applies and this one is ignored",
                   "merge the two into one Telemetry or delete one of them")


def _merge(mesh: MeshTracing, chosen: Sequence[TelemetryRules], problems: tuple[Problem, ...]) -> CompiledTelemetry:
    tracing, providers = _merge_tracing(mesh, chosen)
    metrics = merge_metrics([rule for telemetry in chosen for rule in telemetry.metrics], mesh.observability)
    # AccessLogging: one level per Telemetry that has accessLogging entries.
    access_logs = merge_access_logs([telemetry.access_logging for telemetry in chosen if telemetry.access_logging],
                                    mesh.observability)
    return CompiledTelemetry(tracing, providers, problems, metrics, access_logs)


def _merge_tracing(mesh: MeshTracing, chosen: Sequence[TelemetryRules]) -> tuple[TracingConfig,
                                                                                    tuple[ProviderConfig, ...]]:
    if not mesh.enabled:
        off = TracingPolicy(enabled=False, provider=None)
        return TracingConfig(client=off, server=off), ()
    base = TracingPolicy(provider=mesh.default_provider, sampling_percentage=mesh.default_sampling)
    policies = {"client": base, "server": base}
    for telemetry in chosen:
        for rule in telemetry.rules:
            for direction in rule.directions:
                policies[direction] = rule.apply(policies[direction])
    used: dict[str, ProviderConfig] = {}
    for policy in policies.values():
        if policy.provider is not None:
            used.setdefault(policy.provider, mesh.providers[policy.provider])
    return TracingConfig(client=policies["client"], server=policies["server"]), tuple(used.values())
