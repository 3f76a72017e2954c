"""One MeshConfig `extensionProviders[]` entry, as Istio reads it, -> the provider a sidecar exports to.

Istio reads its mesh config with protobuf's JSON reader (pkg/util/protomarshal ApplyYAML): field
names in lowerCamel or in the proto's snake_case (its own otelcollector test writes
`resource_detectors`), unknown fields ignored. istiod then resolves what only it can: header values
from its own environment (`envName`), the hostname of `[namespace/]hostname`
(pilot/pkg/model LookupCluster). This module does those steps, purely, and hands the result in the
proxy config document's own words to `parse_provider`, which checks every value. Whatever Istio
accepts but tracemesh does not act on comes back as a notice, for the MeshConfig's status.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from tracemesh_operator.compiler.model import Problem
from tracemesh_sidecar.config import ConfigError, ProviderConfig
from tracemesh_sidecar.config.fields import Fields, join
from tracemesh_sidecar.config.model import PROVIDER_KINDS, dump_provider, parse_provider

MESH_RESOURCE = "MeshConfig"
# The fields of Istio's providers (istio/api mesh/v1alpha1/config.proto), by message, and tracemesh's own
# additions (`connectTimeout`, `batch`, and the propagation and reporting options after Kong's Zipkin plugin:
# README "Coming from Kong"); a field outside these is ignored, as Istio ignores it.
_TRACEMESH_FIELDS = frozenset({"connectTimeout", "batch", "sendTimeout", "readTimeout", "headerType",
                               "defaultHeaderType", "extraExtract", "tagsHeader", "responseHeaderForTraceId",
                               "localServiceName", "defaultServiceName", "baggageTags"})
# A pod's per-workload override of its provider's extensions: annotation -> the provider field it sets.
WORKLOAD_ANNOTATION_PREFIX = "tracing.tracemesh.io/"
WORKLOAD_ANNOTATIONS: Mapping[str, str] = {
    f"{WORKLOAD_ANNOTATION_PREFIX}{name}": field for name, field in (
        ("header-type", "headerType"), ("default-header-type", "defaultHeaderType"),
        ("extra-extract", "extraExtract"), ("tags-header", "tagsHeader"),
        ("response-header-for-trace-id", "responseHeaderForTraceId"), ("local-service-name", "localServiceName"),
        ("default-service-name", "defaultServiceName"), ("baggage-tags", "baggageTags"))}
_LIST_FIELDS = frozenset({"extraExtract", "baggageTags"})  # written comma-separated in an annotation
_FIELDS: Mapping[str, frozenset[str]] = {
    # ZipkinTracingProvider
    "zipkin": frozenset({"service", "port", "maxTagLength", "enable64bitTraceId", "path", "traceContextOption",
                         "timeout", "headers"}) | _TRACEMESH_FIELDS,
    # OpenTelemetryTracingProvider
    "opentelemetry": frozenset({"service", "port", "maxTagLength", "http", "grpc", "resourceDetectors",
                                "serviceAttributeEnrichment", "dynatraceSampler"}) | _TRACEMESH_FIELDS,
    # tracemesh's shorthand for OTLP/HTTP to a Jaeger collector: Zipkin's fields, read by parse_provider
    "jaeger": frozenset({"service", "port", "maxTagLength", "enable64bitTraceId", "path", "traceContextOption",
                         "timeout", "headers"}) | _TRACEMESH_FIELDS,
    "http": frozenset({"path", "timeout", "headers"}),  # HttpService
    "grpc": frozenset({"timeout", "initialMetadata"}),  # GrpcService
    "resourceDetectors": frozenset({"environment", "dynatrace"}),  # ResourceDetectors
    "header": frozenset({"name", "value", "envName"}),  # HttpHeader
}
# Every kind of ExtensionProvider Istio knows (config.proto's `oneof provider`), besides the tracing kinds
# tracemesh exports to: accepted, not acted on.
FOREIGN_KINDS = frozenset({
    "envoyExtAuthzHttp", "envoyExtAuthzGrpc", "lightstep", "datadog", "stackdriver", "opencensus", "skywalking",
    "prometheus", "envoyFileAccessLog", "envoyHttpAls", "envoyTcpAls", "envoyOtelAls", "sds"})
SERVICE_ATTRIBUTE_ENRICHMENTS = ("ISTIO_CANONICAL", "OTEL_SEMANTIC_CONVENTIONS")
_DNS_LABEL = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SNAKE = re.compile(r"_([a-z0-9])")


def proto_json_name(name: str) -> str:
    """The lowerCamel JSON name protobuf gives a snake_case field: `enable_64bit_trace_id` -> `enable64bitTraceId`."""
    return _SNAKE.sub(lambda match: match.group(1).upper(), name)


def camel_case_keys(value: Any, path: str) -> Any:
    """The document with every field in its JSON name, as protobuf's JSON reader accepts either spelling.

    Header lists hold user words, not field names, only in tracemesh's `{name: value}` mapping form, and a log
    format's `labels` are log field names: both left alone.
    """
    if isinstance(value, list):
        return [camel_case_keys(item, join(path, index)) for index, item in enumerate(value)]
    if not isinstance(value, Mapping):
        return value
    result: dict[str, Any] = {}
    for key, item in value.items():
        name = proto_json_name(str(key))
        if name in result:
            raise ConfigError(join(path, str(key)), f"sets {name} a second time",
                              f"keep one of {name} and its snake_case spelling")
        # Header maps and a log format's `labels` (log field names) are user words, not field names.
        user_words = name in ("headers", "initialMetadata", "labels") and isinstance(item, Mapping)
        result[name] = item if user_words else camel_case_keys(item, join(path, name))
    return result


def provider_kind(entry: Mapping[str, Any]) -> str | None:
    """The provider kind an entry sets (its one key besides `name`), or None when it sets none or several."""
    kinds = [proto_json_name(str(key)) for key in entry if key != "name"]
    return kinds[0] if len(kinds) == 1 else None


def read_provider(entry: Mapping[str, Any], path: str,
                  environ: Mapping[str, str]) -> tuple[ProviderConfig, tuple[Problem, ...]]:
    """An entry of a tracing kind tracemesh exports to, and what of it is not acted on; raises ConfigError."""
    document = camel_case_keys(entry, path)
    kinds = [key for key in document if key != "name"]
    if len(kinds) != 1 or kinds[0] not in PROVIDER_KINDS:
        raise ConfigError(path, f"sets {', '.join(kinds) or 'no provider kind'}",
                          f"set exactly one of {', '.join(PROVIDER_KINDS)}")
    kind = kinds[0]
    notices: list[Problem] = []
    body_path = join(path, kind)
    body = _known(document[kind], kind, body_path, notices)
    body["service"] = service_hostname(body.get("service"), join(body_path, "service"))
    for block in ("http", "grpc"):
        if block in body:
            body[block] = _known(body[block], block, join(body_path, block), notices)
            key = "headers" if block == "http" else "initialMetadata"
            if key in body[block]:
                body[block][key] = _headers(body[block][key], join(join(body_path, block), key), environ, notices)
    if "headers" in body:
        body["headers"] = _headers(body["headers"], join(body_path, "headers"), environ, notices)
    if "resourceDetectors" in body:
        detectors = _known(body["resourceDetectors"], "resourceDetectors", join(body_path, "resourceDetectors"),
                           notices)
        if detectors.pop("dynatrace", None) is not None:
            notices.append(_unsupported(join(join(body_path, "resourceDetectors"), "dynatrace"),
                                        "reads Dynatrace's enrichment files on the host, which a tracemesh sidecar "
                                        "does not", "remove it; the environment detector is applied"))
        body["resourceDetectors"] = detectors
    _sampler_and_enrichment(body, body_path, notices)
    provider = parse_provider(Fields({"name": document.get("name"), kind: body}, path))
    return provider, tuple(notices)


def _known(value: object, message: str, path: str, notices: list[Problem]) -> dict[str, Any]:
    """The fields of `value` that Istio's `message` has; each other one is ignored, as Istio ignores it, and noted."""
    fields = Fields(value, path)  # the error for a non-mapping
    known = {key: fields.raw(key) for key in fields.keys() if key in _FIELDS[message]}  # noqa: SIM118 (Fields)
    for key in sorted(set(fields.keys()) - _FIELDS[message]):
        notices.append(Problem(MESH_RESOURCE, join(path, key), "UnknownField",
                               "is not a field of Istio's provider; ignored, as Istio ignores unknown fields",
                               f"remove it or use one of: {', '.join(sorted(_FIELDS[message]))}"))
    return known


def service_hostname(service: object, path: str) -> object:
    """The hostname of Istio's `[<Namespace>/]<Hostname>`, checked as Istio's validateExtensionProviderService does.

    The namespace only tells istiod which registry entry is meant; the hostname is what the sidecar connects to.
    """
    if not isinstance(service, str) or not service:
        return service  # parse_provider names the missing or mistyped field
    namespace, slash, hostname = service.rpartition("/")
    fix = "write a hostname such as zipkin.istio-system.svc.cluster.local, or namespace/hostname"
    if slash:
        if "/" in namespace or not hostname:
            raise ConfigError(path, f"is {service!r}, which is not [<Namespace>/]<Hostname>", fix)
        bare = namespace.removeprefix("~")
        if bare not in ("", "*", ".") and not (len(bare) <= 63 and _NAMESPACE.fullmatch(bare)):
            raise ConfigError(path, f"names the namespace {namespace!r}, which is not a valid namespace", fix)
    if not _is_fqdn(hostname):
        try:
            ipaddress.ip_address(hostname)
        except ValueError:
            raise ConfigError(path, f"is {service!r}, whose hostname is neither a DNS name nor an IP address",
                              fix) from None
    return hostname


def _is_fqdn(name: str) -> bool:
    labels = name.split(".")
    return 0 < len(name) <= 255 and all(len(label) <= 63 and _DNS_LABEL.fullmatch(label) for label in labels)


def _headers(value: object, path: str, environ: Mapping[str, str], notices: list[Problem]) -> object:
    """Istio's HttpHeader list with every `envName` read from the operator's environment (istiod reads its own)."""
    if not isinstance(value, list):
        return value  # tracemesh's {name: value} mapping, or a type error parse_provider reports
    resolved: list[object] = []
    for index, item in enumerate(value):
        item_path = join(path, index)
        if not isinstance(item, Mapping) or "envName" not in item:
            resolved.append(_known(item, "header", item_path, notices) if isinstance(item, Mapping) else item)
            continue
        header = _known(item, "header", item_path, notices)
        if "value" in header:
            raise ConfigError(join(item_path, "envName"), "is set together with value",
                              "set value or envName, not both (they are one oneof in Istio's HttpHeader)")
        variable = Fields(header, item_path).string("envName")
        if variable not in environ:
            # Istio's getHeaderValue: an unset variable gives an empty value, and the header is still sent.
            notices.append(Problem(MESH_RESOURCE, join(item_path, "envName"), "EnvironmentVariableMissing",
                                   f"names {variable}, which is not set in the operator's environment, so the "
                                   f"header is sent with an empty value, as Istio does",
                                   f"set {variable} in the operator's Deployment (env, or env.valueFrom a Secret)"))
        resolved.append({"name": header.get("name"), "value": environ.get(variable, "")})
    return resolved


def _sampler_and_enrichment(body: dict[str, Any], path: str, notices: list[Problem]) -> None:
    sampler = body.pop("dynatraceSampler", None)
    if sampler is not None:
        Fields(sampler, join(path, "dynatraceSampler"))  # the error for a non-mapping
        notices.append(_unsupported(join(path, "dynatraceSampler"),
                                    "asks Dynatrace's API for a sampling rate, which tracemesh's sidecar cannot",
                                    "remove it; the Telemetry's randomSamplingPercentage decides instead"))
    enrichment = body.pop("serviceAttributeEnrichment", None)
    if enrichment is not None:
        value = Fields({"serviceAttributeEnrichment": enrichment}, path).choice(
            "serviceAttributeEnrichment", SERVICE_ATTRIBUTE_ENRICHMENTS)
        if value == "OTEL_SEMANTIC_CONVENTIONS":
            notices.append(_unsupported(join(path, "serviceAttributeEnrichment"),
                                        "is OTEL_SEMANTIC_CONVENTIONS, but tracemesh names the service of every span "
                                        "as Istio's ISTIO_CANONICAL does",
                                        "remove it or set ISTIO_CANONICAL"))


def _unsupported(field: str, problem: str, fix: str) -> Problem:
    return Problem(MESH_RESOURCE, field, "UnsupportedField", f"{problem}; accepted, not acted on", fix)


def workload_providers(providers: tuple[ProviderConfig, ...], annotations: Mapping[str, str],
                       resource: str) -> tuple[tuple[ProviderConfig, ...], tuple[Problem, ...]]:
    """The providers with a pod's `tracing.tracemesh.io/*` annotations applied (WORKLOAD_ANNOTATIONS), and what
    of them is wrong: a wrong annotation leaves the provider as the MeshConfig has it."""
    overrides: dict[str, object] = {}
    problems: list[Problem] = []
    for key, value in sorted(annotations.items()):
        if not key.startswith(WORKLOAD_ANNOTATION_PREFIX):
            continue
        field = WORKLOAD_ANNOTATIONS.get(key)
        if field is None:
            problems.append(Problem(resource, f"metadata.annotations.{key}", "UnknownAnnotation",
                                    "is not a tracemesh tracing annotation; ignored",
                                    f"use one of: {', '.join(WORKLOAD_ANNOTATIONS)}"))
        elif field in _LIST_FIELDS:
            overrides[field] = [item.strip() for item in value.split(",") if item.strip()]
        elif field == "tagsHeader" and value.lower() in ("true", "false"):
            overrides[field] = value.lower() == "true"
        else:
            overrides[field] = value
    if not overrides:
        return providers, tuple(problems)
    annotation_of = {field: key for key, field in WORKLOAD_ANNOTATIONS.items()}
    result = []
    for provider in providers:
        document = dump_provider(provider)
        document[provider.kind].update(overrides)
        try:
            result.append(parse_provider(Fields(document, "")))
        except ConfigError as error:
            field = next((name for name in overrides if name in error.field), error.field)
            problems.append(Problem(resource, f"metadata.annotations.{annotation_of.get(field, field)}",
                                    "InvalidAnnotation", f"{error.problem} (provider {provider.name!r})",
                                    f"{error.fix}; the MeshConfig's provider applies meanwhile"))
            result.append(provider)
    return tuple(result), tuple(problems)
