"""Telemetry `metrics` -> one workload's MetricsConfig, merged as istio/istio pilot/pkg/model/telemetry.go
mergeMetrics merges them (followed step by step; the comments name its steps).

Every level's `metrics[]` entries are applied in order, root namespace, namespace, workload: an entry without
providers applies to its parent's; the providers in scope are those of the last entry naming any (else
MeshConfig `defaultProviders.metrics`). Per provider and direction, an override disabling ALL_METRICS drops
the whole direction (until a later override of that direction re-enables it); other overrides merge into
each metric they match, `disabled` and tags (later wins per tag). Only a `prometheus` provider makes metrics
in tracemesh (as in Istio, where only it builds a stats filter): without one in scope, none are made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tracemesh_operator.compiler.mesh_observability import (
    METRICS_KINDS,
    PROMETHEUS,
    MeshObservability,
    provider_references,
)
from tracemesh_operator.compiler.model import DIRECTIONS, MODES, Problem, optional_boolean
from tracemesh_sidecar.config import ConfigError
from tracemesh_sidecar.config.fields import Fields, join
from tracemesh_sidecar.config.observability import (
    ISTIO_METRICS,
    MetricOverride,
    MetricsConfig,
    MetricsPolicy,
    check_expression,
)

# telemetry.proto MetricSelector.IstioMetric: every standard metric Istio knows. The sidecar reports all of
# them but the gRPC message counters.
ALL_METRICS = "ALL_METRICS"
ISTIO_METRIC_NAMES = (*ISTIO_METRICS, "GRPC_REQUEST_MESSAGES", "GRPC_RESPONSE_MESSAGES")
# telemetry.go allMetrics: what ALL_METRICS stands for, sorted.
EVERY_METRIC = tuple(sorted(name for name in ISTIO_METRIC_NAMES if name != ALL_METRICS))
TAG_OPERATIONS = ("UPSERT", "REMOVE")


@dataclass(frozen=True, slots=True)
class TagOverride:
    name: str
    value: str | None  # None: REMOVE; else UPSERT's expression


@dataclass(frozen=True, slots=True)
class OverrideRule:
    """One `overrides[]` entry: which metrics (all of them when `all_metrics`), in which directions."""

    metrics: tuple[str, ...]
    all_metrics: bool
    directions: tuple[str, ...]
    disabled: bool | None
    tags: tuple[TagOverride, ...]


@dataclass(frozen=True, slots=True)
class MetricsRule:
    """One `spec.metrics[]` entry; empty `providers`: its parent's."""

    providers: tuple[str, ...]
    overrides: tuple[OverrideRule, ...]


def read_metrics_rule(entry: Fields, mesh: MeshObservability, resource: str,
                      notices: list[Problem]) -> MetricsRule:
    providers = []
    for path, resolved in provider_references(entry, mesh, f"use {PROMETHEUS} (Istio's built-in metrics provider) "
                                              "or add it to extensionProviders"):
        kind = mesh.kinds[resolved]
        if kind != PROMETHEUS:
            what = ("makes Istio's metrics for Stackdriver, which tracemesh does not produce" if kind in METRICS_KINDS
                    else "makes no metrics (not a metrics provider)")
            notices.append(Problem(resource, f"{path}.name", "UnsupportedProvider",
                                   f"names {resolved!r}, a {kind} provider, which {what}; the metrics it selects "
                                   f"instead of prometheus are not made", f"name {PROMETHEUS}"))
        providers.append(resolved)
    overrides = tuple(_read_override(Fields(item, path), resource, notices) for path, item in entry.items("overrides"))
    if entry.has("reportingInterval"):
        entry.duration("reportingInterval")
        # Istio: how often Envoy adds an open TCP connection's bytes to the TCP metrics (default 5s).
        notices.append(Problem(resource, f"{entry.path}.reportingInterval", "UnsupportedField",
                               "times the periodic TCP metric reports of open connections; tracemesh's sidecar adds "
                               "a TCP connection's bytes to istio_tcp_sent_bytes_total and "
                               "istio_tcp_received_bytes_total when it closes; accepted, not acted on",
                               "remove it; long-lived TCP connections show their bytes once they close"))
    entry.done()
    return MetricsRule(tuple(providers), overrides)


def _read_override(entry: Fields, resource: str, notices: list[Problem]) -> OverrideRule:
    match = entry.mapping("match")
    mode = match.choice("mode", tuple(MODES), "CLIENT_AND_SERVER")
    metric = match.choice("metric", ISTIO_METRIC_NAMES, None)
    custom = match.string("customMetric", None)
    match.done()
    if metric is not None and custom is not None:
        raise ConfigError(f"{match.path}.customMetric", "is set together with metric",
                          "set one of metric and customMetric (they are a oneof in Istio's MetricSelector)")
    if custom is not None:
        notices.append(Problem(resource, f"{match.path}.customMetric", "UnsupportedField",
                               f"is {custom!r}; tracemesh's sidecar reports Istio's standard metrics only, so this "
                               f"override changes nothing", "match one of Istio's standard metrics"))
    elif metric in ("GRPC_REQUEST_MESSAGES", "GRPC_RESPONSE_MESSAGES"):
        notices.append(Problem(resource, f"{match.path}.metric", "UnsupportedField",
                               f"is {metric}, a gRPC message counter tracemesh's sidecar does not report, so this "
                               f"override changes nothing", "match a metric the sidecar reports, e.g. REQUEST_COUNT"))
    disabled = optional_boolean(entry, "disabled")
    tags = []
    table = entry.mapping("tagOverrides")
    for name in sorted(table.keys()):
        tag = _read_tag(table.mapping(name), name, resource, notices)
        if tag is not None:
            tags.append(tag)
    entry.done()
    # isAllMetrics: no metric (or ALL_METRICS) and no customMetric.
    all_metrics = custom is None and metric in (None, ALL_METRICS)
    metrics = EVERY_METRIC if all_metrics else ((custom,) if custom is not None else (str(metric),))
    return OverrideRule(metrics, all_metrics, MODES[mode], disabled, tuple(tags))


def _read_tag(fields: Fields, name: str, resource: str, notices: list[Problem]) -> TagOverride | None:
    """One tagOverrides entry, as the CRD's validation rules admit it; an expression the sidecar cannot evaluate
    is reported and left out (None)."""
    operation = fields.choice("operation", TAG_OPERATIONS, "UPSERT")
    value = fields.string("value", None, allow_empty=True)
    fields.done()
    if operation == "REMOVE":
        if value is not None:
            raise ConfigError(join(fields.path, "value"), "must not be set when operation is REMOVE",
                              "remove value, or use operation UPSERT")
        return TagOverride(name, None)
    if not value:
        raise ConfigError(join(fields.path, "value"), "must be set when operation is UPSERT",
                          "give an expression such as request.host, or use operation REMOVE")
    try:
        check_expression(value, join(fields.path, "value"))
    except ConfigError as error:
        notices.append(Problem(resource, error.field, "UnsupportedExpression",
                               f"{error.problem}; the tag {name!r} is left as it was", error.fix))
        return None
    return TagOverride(name, value)


@dataclass
class _Override:
    disabled: bool | None = None
    tags: dict[str, str | None] | None = None


def merge_metrics(rules: Sequence[MetricsRule], mesh: MeshObservability) -> MetricsConfig:
    """mergeMetrics, for the workload's rules in hierarchy order; the prometheus provider's result."""
    defaults = tuple(resolved for name in mesh.default_metrics if (resolved := mesh.resolve(name)) is not None)
    # provider -> direction -> metric -> override
    providers: dict[str, dict[str, dict[str, _Override]]] = {}
    if not rules:
        providers = {provider: {} for provider in defaults}
    in_scope = next((rule.providers for rule in reversed(rules) if rule.providers), defaults)
    parent = defaults
    disabled_all: set[tuple[str, str]] = set()
    for rule in rules:
        names = rule.providers or parent
        parent = names
        for provider in (name for name in names if name in in_scope):
            directions = providers.setdefault(provider, {direction: {} for direction in DIRECTIONS})
            for override in rule.overrides:
                if override.all_metrics and override.disabled:
                    disabled_all.update((provider, direction) for direction in override.directions)
                    continue
                for direction in override.directions:
                    disabled_all.discard((provider, direction))
                    for metric in override.metrics:
                        merged = directions.setdefault(direction, {}).setdefault(metric, _Override())
                        if override.disabled is not None:
                            merged.disabled = override.disabled
                        for tag in override.tags:
                            merged.tags = {**(merged.tags or {}), tag.name: tag.value}
    prometheus = sorted(name for name in providers if mesh.kinds.get(name) == PROMETHEUS)
    if not prometheus:
        off = MetricsPolicy(enabled=False)
        return MetricsConfig(client=off, server=off)
    chosen = providers[prometheus[0]]
    return MetricsConfig(**{direction: _policy(chosen.get(direction, {}), (prometheus[0], direction) in disabled_all)
                            for direction in DIRECTIONS})


def _policy(metrics: dict[str, _Override], disabled: bool) -> MetricsPolicy:
    if disabled:
        return MetricsPolicy(enabled=False)
    overrides = []
    for metric in sorted(metrics):
        if metric not in ISTIO_METRICS:
            continue  # a gRPC message counter or a custom metric: not reported (noticed where it is set)
        merged, tags = metrics[metric], sorted((metrics[metric].tags or {}).items())
        if merged.disabled is None and not tags:
            continue  # changes nothing (Istio writes it; the sidecar would do nothing with it)
        overrides.append(MetricOverride(
            metric=metric, disabled=merged.disabled,
            tag_remove=tuple(name for name, value in tags if value is None),
            tag_set=tuple((name, value) for name, value in tags if value is not None)))
    return MetricsPolicy(enabled=True, overrides=tuple(overrides))
