"""Telemetry `accessLogging` (and MeshConfig `accessLogFile`) -> one workload's AccessLogConfig, merged as
istio/istio pilot/pkg/model/telemetry.go AccessLogging/mergeLogs and pilot/pkg/networking/core/accesslog.go
merge them (followed step by step).

Per direction (client = outbound, server = inbound): the providers in scope are those named by the entries of
the last level (root namespace, namespace, workload Telemetry) that names any for that direction, else
MeshConfig `defaultProviders.accessLogging`; each entry (without providers: its parent's) then enables or
(`disabled: true`) disables its in-scope providers; a provider's filter is the one of the last entry naming it.
Where no Telemetry configures access logging and there is no default provider, or none of the providers is
an access logger, the MeshConfig's `accessLogFile` applies, as Istio's "legacy mesh config setting".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from tracemesh_operator.compiler.mesh_observability import (
    ACCESS_LOG_KINDS,
    FILE_ACCESS_LOG,
    MeshObservability,
    provider_references,
)
from tracemesh_operator.compiler.model import DIRECTIONS, MODES, Problem, optional_boolean
from tracemesh_sidecar.config import ConfigError
from tracemesh_sidecar.config.fields import Fields
from tracemesh_sidecar.config.observability import AccessLogConfig, AccessLogSink, check_expression


@dataclass(frozen=True, slots=True)
class AccessLogRule:
    """One `spec.accessLogging[]` entry; empty `providers`: its parent's."""

    providers: tuple[str, ...]
    directions: tuple[str, ...]
    disabled: bool | None
    filter: str | None


def read_access_log_rule(entry: Fields, mesh: MeshObservability, resource: str,
                         notices: list[Problem]) -> AccessLogRule:
    match = entry.mapping("match")
    mode = match.choice("mode", tuple(MODES), "CLIENT_AND_SERVER")
    match.done()
    providers = []
    for path, resolved in provider_references(entry, mesh, "use envoy (Istio's built-in access log to /dev/stdout) "
                                              "or add an envoyFileAccessLog provider to extensionProviders"):
        kind = mesh.kinds[resolved]
        if kind != FILE_ACCESS_LOG:
            what = ("sends access logs to a collector over gRPC/OTLP, which tracemesh's sidecar does not"
                    if kind in ACCESS_LOG_KINDS else "is not an access logger")
            notices.append(Problem(resource, f"{path}.name", "UnsupportedProvider",
                                   f"names {resolved!r}, a {kind} provider, which {what}; its access logs are not "
                                   f"written", "use an envoyFileAccessLog provider, e.g. the built-in envoy"))
        providers.append(resolved)
    disabled = optional_boolean(entry, "disabled")
    log_filter = None
    if entry.has("filter"):
        filter_fields = entry.mapping("filter")
        expression = filter_fields.string("expression", None, allow_empty=True)
        filter_fields.done()
        log_filter = _checked_filter(expression, f"{filter_fields.path}.expression", resource, notices)
        if log_filter is not None and not providers:
            # mergeLogs records a filter only for the providers its own entry names.
            notices.append(Problem(resource, filter_fields.path, "FilterWithoutProviders",
                                   "is set on an entry that names no providers; Istio applies a filter only to "
                                   "the providers of its own entry, so it is ignored, as Istio ignores it",
                                   "name the providers in this entry, e.g. providers: [{name: envoy}]"))
    entry.done()
    return AccessLogRule(tuple(providers), MODES[mode], disabled, log_filter)


def _checked_filter(expression: str | None, path: str, resource: str, notices: list[Problem]) -> str | None:
    if not expression:
        return None
    try:
        check_expression(expression, path)
    except ConfigError as error:
        notices.append(Problem(resource, error.field, "UnsupportedExpression",
                               f"{error.problem}; the log is written without this filter (every request)",
                               error.fix))
        return None
    return expression


@dataclass(frozen=True, slots=True)
class _Spec:
    disabled: bool
    filter: str | None = None


def merge_access_logs(levels: Sequence[Sequence[AccessLogRule]], mesh: MeshObservability) -> AccessLogConfig:
    """`levels`: the non-empty `accessLogging` lists of the workload's Telemetry, root namespace first."""
    return AccessLogConfig(**{direction: _sinks(levels, mesh, direction) for direction in DIRECTIONS})


def _sinks(levels: Sequence[Sequence[AccessLogRule]], mesh: MeshObservability,
           direction: str) -> tuple[AccessLogSink, ...]:
    defaults = tuple(resolved for name in mesh.default_access_logging
                     if (resolved := mesh.resolve(name)) is not None)
    specs = _merge_logs(levels, defaults, direction)
    # AccessLogging: only the providers that are access loggers make a config; with none, the legacy setting.
    loggers = {provider: spec for provider, spec in specs.items() if mesh.kinds.get(provider) in ACCESS_LOG_KINDS}
    if not loggers:
        return (mesh.mesh_access_log,) if mesh.mesh_access_log is not None else ()
    # Sorted by provider name, as AccessLogging sorts them; an ALS provider writes nothing here (noticed).
    return tuple(replace(mesh.file_logs[provider], filter=spec.filter) for provider, spec in sorted(loggers.items())
                 if not spec.disabled and provider in mesh.file_logs)


def _merge_logs(levels: Sequence[Sequence[AccessLogRule]], defaults: tuple[str, ...],
                direction: str) -> dict[str, _Spec]:
    """mergeLogs for one WorkloadMode."""
    if not levels:
        return {provider: _Spec(disabled=False) for provider in defaults}
    in_scope: tuple[str, ...] = defaults
    filters: dict[str, str | None] = {}
    for level in levels:
        names: list[str] = []
        for rule in (rule for rule in level if direction in rule.directions):
            names += rule.providers
            filters.update(dict.fromkeys(rule.providers, rule.filter))
        if names:
            in_scope = tuple(names)
    specs: dict[str, _Spec] = {}
    parent = defaults
    for level in levels:
        for rule in level:
            names_here = rule.providers or parent
            parent = names_here
            if direction not in rule.directions:
                continue
            for provider in (name for name in names_here if name in in_scope):
                specs[provider] = _Spec(disabled=True) if rule.disabled else _Spec(False, filters.get(provider))
    return specs
