"""One Telemetry object -> its tracing, metrics and access logging rules, or the Problem that makes it unusable."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tracemesh_operator.compiler.access_logging import AccessLogRule, read_access_log_rule
from tracemesh_operator.compiler.gateway_api import GATEWAY_GROUP
from tracemesh_operator.compiler.mesh import MeshTracing, unknown_provider_fix, unknown_provider_problem
from tracemesh_operator.compiler.metrics import MetricsRule, read_metrics_rule
from tracemesh_operator.compiler.model import MODES, Problem, Rejected, optional_boolean
from tracemesh_sidecar.config import ConfigError, CustomTag, TracingPolicy
from tracemesh_sidecar.config.fields import Fields
from tracemesh_sidecar.config.model import CustomTagKind, parse_custom_tag

# A `formatter` custom tag is an Envoy substitution format string; the sidecar reads request headers and its
# environment, so the two operators that are exactly that become header and environment tags. A value Envoy's
# formatter cannot find is "-".
_FORMATTERS: Mapping[CustomTagKind, re.Pattern[str]] = {
    "header": re.compile(r"%REQ\(([^():?%]+)\)%"),
    "environment": re.compile(r"%ENVIRONMENT\(([^():%]+)\)%"),
}
MISSING_VALUE = "-"


@dataclass(frozen=True, slots=True)
class TracingRule:
    """One `spec.tracing[]` entry; None means "not set here, inherit from the parent"."""

    directions: tuple[str, ...]
    provider: str | None = None
    sampling_percentage: float | None = None
    disable_span_reporting: bool | None = None
    disable_context_propagation: bool | None = None
    custom_tags: tuple[CustomTag, ...] | None = None
    enable_istio_tags: bool | None = None
    use_request_id_for_trace_sampling: bool | None = None

    def apply(self, parent: TracingPolicy) -> TracingPolicy:
        policy = parent
        if self.provider is not None:
            policy = replace(policy, provider=self.provider)
        if self.sampling_percentage is not None:
            policy = replace(policy, sampling_percentage=self.sampling_percentage)
        if self.disable_span_reporting is not None:
            policy = replace(policy, disable_span_reporting=self.disable_span_reporting)
        if self.disable_context_propagation is not None:
            policy = replace(policy, disable_context_propagation=self.disable_context_propagation)
        if self.custom_tags is not None:
            policy = replace(policy, custom_tags=self.custom_tags)
        if self.enable_istio_tags is not None:
            policy = replace(policy, enable_istio_tags=self.enable_istio_tags)
        if self.use_request_id_for_trace_sampling is not None:
            policy = replace(policy, use_request_id_for_trace_sampling=self.use_request_id_for_trace_sampling)
        return policy


@dataclass(frozen=True, slots=True)
class TelemetryRules:
    namespace: str
    name: str
    created: str  # metadata.creationTimestamp (RFC 3339 sorts as text): the oldest wins a conflict
    # None: applies to the whole namespace. Like Istio, an empty matchLabels counts as no selector.
    selector: Mapping[str, str] | None
    targeted: bool  # targetRef(s): for gateways and waypoints, which have no sidecar
    rules: tuple[TracingRule, ...]
    notices: tuple[Problem, ...] = ()  # accepted, not (all) acted on: for the Honoured condition
    # The Gateway API Gateways (of its own namespace) its targetRefs name, by name.
    target_gateways: tuple[str, ...] = ()
    metrics: tuple[MetricsRule, ...] = ()  # spec.metrics
    access_logging: tuple[AccessLogRule, ...] = ()  # spec.accessLogging

    @property
    def resource(self) -> str:
        return telemetry_resource(self.namespace, self.name)

    def selects(self, labels: Mapping[str, str]) -> bool:
        return self.selector is not None and all(labels.get(k) == v for k, v in self.selector.items())


def match_labels(spec: object) -> Mapping[str, Any] | None:
    """A (possibly invalid) spec's `selector.matchLabels`; None when the Telemetry is namespace-wide."""
    selector = spec.get("selector") if isinstance(spec, Mapping) else None
    labels = selector.get("matchLabels") if isinstance(selector, Mapping) else None
    return labels if isinstance(labels, Mapping) and labels else None


def telemetry_resource(namespace: str, name: str) -> str:
    return f"Telemetry {namespace}/{name}"


def object_identity(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def read_telemetry(obj: Mapping[str, Any], mesh: MeshTracing) -> TelemetryRules | Problem:
    namespace, name = object_identity(obj)
    try:
        return _read(obj, namespace, name, mesh)
    except ConfigError as error:
        return Problem(telemetry_resource(namespace, name), error.field, "InvalidTelemetry", error.problem, error.fix)
    except Rejected as error:
        return Problem(telemetry_resource(namespace, name), error.field, error.reason, error.problem, error.fix)


def _read(obj: Mapping[str, Any], namespace: str, name: str, mesh: MeshTracing) -> TelemetryRules:
    spec = Fields(obj.get("spec"), "spec")
    selector = spec.mapping("selector").string_map("matchLabels") or None
    targets = [key for key in ("targetRef", "targetRefs") if spec.has(key)]
    if spec.has("selector") and targets:
        raise Rejected(f"spec.{targets[0]}", "SelectorWithTargetRef", "is set together with spec.selector",
                        f"use either selector (for sidecars) or {targets[0]} (for gateways), not both")
    resource = telemetry_resource(namespace, name)
    notices: list[Problem] = []
    rules = tuple(_read_rule(Fields(item, path), mesh, resource, notices) for path, item in spec.items("tracing"))
    metrics = tuple(read_metrics_rule(Fields(item, path), mesh.observability, resource, notices)
                    for path, item in spec.items("metrics"))
    access_logging = tuple(read_access_log_rule(Fields(item, path), mesh.observability, resource, notices)
                           for path, item in spec.items("accessLogging"))
    refs = [spec.raw("targetRef")] if spec.has("targetRef") else list(spec.raw("targetRefs", []))
    # pilot/pkg/model/policyattachment.go ShouldAttachPolicy: a Gateway API Gateway of the Telemetry's namespace
    # (its pods carry gateway.networking.k8s.io/gateway-name); anything else (waypoints, Services) is not run here.
    target_gateways = tuple(str(ref.get("name")) for ref in refs if isinstance(ref, Mapping)
                            and ref.get("group") == GATEWAY_GROUP and ref.get("kind") == "Gateway"
                            and ref.get("namespace") in (None, "", namespace))
    if len(target_gateways) != len(refs):
        notices.append(Problem(resource, f"spec.{targets[0]}", "UnsupportedField",
                               "names something other than a Gateway API Gateway of this namespace (a waypoint, a "
                               "Service, another namespace), which tracemesh does not run; that target is unaffected",
                               "target Gateways (group gateway.networking.k8s.io, kind Gateway), or select "
                               "sidecars with spec.selector"))
    spec.done()
    metadata = obj.get("metadata")
    created = metadata.get("creationTimestamp") if isinstance(metadata, Mapping) else None
    return TelemetryRules(namespace, name, str(created or ""), selector, bool(targets), rules, tuple(notices),
                          target_gateways, metrics, access_logging)


def _read_rule(entry: Fields, mesh: MeshTracing, resource: str, notices: list[Problem]) -> TracingRule:
    match = entry.mapping("match")
    mode = match.choice("mode", tuple(MODES), "CLIENT_AND_SERVER")
    match.done()
    provider = _read_provider(entry, mesh, resource, notices)
    sampling = entry.number("randomSamplingPercentage", None)
    if sampling is not None and not 0.0 <= sampling <= 100.0:
        raise Rejected(f"{entry.path}.randomSamplingPercentage", "SamplingOutOfRange",
                        f"is {sampling:g}, outside 0-100", "use a percentage from 0 to 100, e.g. 100 or 1.5")
    tags = None
    if entry.has("customTags"):
        table = entry.mapping("customTags")
        # A map in the resource: sorted by name so that equal resources compile to equal configs.
        read = (_read_custom_tag(tag, table.mapping(tag), resource, notices) for tag in sorted(table.keys()))
        tags = tuple(tag for tag in read if tag is not None)
    rule = TracingRule(
        directions=MODES[mode],
        provider=provider,
        sampling_percentage=sampling,
        disable_span_reporting=optional_boolean(entry, "disableSpanReporting"),
        disable_context_propagation=optional_boolean(entry, "disableContextPropagation"),
        custom_tags=tags,
        enable_istio_tags=optional_boolean(entry, "enableIstioTags"),
        use_request_id_for_trace_sampling=optional_boolean(entry, "useRequestIdForTraceSampling"),
    )
    entry.done()
    return rule


def _read_custom_tag(name: str, fields: Fields, resource: str, notices: list[Problem]) -> CustomTag | None:
    """One customTags entry; a `formatter` the sidecar cannot evaluate is reported and left out (None)."""
    if not fields.has("formatter"):
        return parse_custom_tag(name, fields)
    formatter = fields.mapping("formatter")
    value = formatter.string("value")
    formatter.done()
    others = [kind for kind in fields.keys() if kind != "formatter" and fields.has(kind)]  # noqa: SIM118
    if others:
        raise ConfigError(f"{fields.path}.{others[0]}", "is set together with formatter",
                          "set exactly one of literal, environment, header, formatter")
    fields.done()
    for kind, pattern in _FORMATTERS.items():
        if match := pattern.fullmatch(value.strip()):
            return CustomTag(name=name, kind=kind, source=match.group(1), default=MISSING_VALUE)
    notices.append(Problem(resource, f"{fields.path}.formatter.value", "UnsupportedField",
                           f"is {value!r}; tracemesh's sidecar evaluates only %REQ(header)% and %ENVIRONMENT(NAME)% "
                           f"formatters, so the tag {name!r} is left out", "use a header, environment or literal "
                           "tag, or a formatter of exactly %REQ(header)% or %ENVIRONMENT(NAME)%"))
    return None


def _read_provider(entry: Fields, mesh: MeshTracing, resource: str, notices: list[Problem]) -> str | None:
    names: list[str] = []
    for path, item in entry.items("providers"):
        reference = Fields(item, path)
        names.append(reference.string("name"))
        reference.done()
    if not names:
        return None
    if len(names) > 1:
        # pilot/pkg/model/telemetry.go Tracing: "we only support a single provider per mode", the first.
        notices.append(Problem(resource, f"{entry.path}.providers", "FirstProviderUsed",
                               f"names {len(names)} providers; {names[0]!r} is used and the others are ignored, "
                               f"as Istio does", "name one provider per tracing rule"))
    resolved = mesh.resolve(names[0])
    if resolved is None:
        raise Rejected(f"{entry.path}.providers[0].name", "UnknownProvider",
                        unknown_provider_problem(names[0], mesh.providers, mesh.foreign),
                        unknown_provider_fix(mesh.providers))
    return resolved
