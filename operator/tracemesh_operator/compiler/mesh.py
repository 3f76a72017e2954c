"""MeshConfig `spec` -> the mesh-wide settings every compile starts from: tracing here, metrics and access
logs in mesh_observability."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tracemesh_operator.compiler.mesh_observability import (
    FILE_ACCESS_LOG,
    PROMETHEUS,
    MeshObservability,
    read_observability,
)
from tracemesh_operator.compiler.model import Problem
from tracemesh_operator.compiler.providers import (
    FOREIGN_KINDS,
    MESH_RESOURCE,
    camel_case_keys,
    provider_kind,
    read_provider,
)
from tracemesh_sidecar.config import ConfigError, ProviderConfig
from tracemesh_sidecar.config.fields import Fields
from tracemesh_sidecar.config.model import PROVIDER_KINDS
from tracemesh_sidecar.proxy.termination import ENV_EXIT_ON_ZERO_ACTIVE_CONNECTIONS, ENV_MINIMUM_DRAIN_DURATION

DEFAULT_ROOT_NAMESPACE = "istio-system"
DEFAULT_SAMPLING = 1.0  # Istio's defaultConfig.tracing.sampling default
NO_ENVIRONMENT: Mapping[str, str] = {}
# The MeshConfig fields the operator acts on; Istio's others are accepted and reported as not acted on.
ACTED_ON = frozenset({"rootNamespace", "enableTracing", "trustDomain", "defaultConfig", "extensionProviders",
                      "defaultProviders", "accessLogFile", "accessLogEncoding", "accessLogFormat"})
# The provider kinds besides the tracing ones that the sidecar acts on (metrics and file access logs): each is
# judged where a Telemetry or defaultProviders selects it.
ACTED_ON_KINDS = frozenset({PROMETHEUS, FILE_ACCESS_LOG})
# defaultConfig: workload.mesh_id reads meshId; injection (injection/proxy_config.py) the lifecycle fields.
ACTED_ON_PROXY_CONFIG = frozenset({"meshId", "tracing", "terminationDrainDuration", "holdApplicationUntilProxyStarts",
                                   "proxyMetadata"})
# proxyMetadata: every entry becomes a variable of the proxy; these are the ones the sidecar reads.
ACTED_ON_PROXY_METADATA = frozenset({ENV_EXIT_ON_ZERO_ACTIVE_CONNECTIONS, ENV_MINIMUM_DRAIN_DURATION})


@dataclass(frozen=True, slots=True)
class MeshTracing:
    root_namespace: str
    enabled: bool
    providers: Mapping[str, ProviderConfig]
    foreign: Mapping[str, str]  # provider name -> its kind, for tracing providers tracemesh does not support
    default_provider: str | None
    default_sampling: float
    problems: tuple[Problem, ...]
    notices: tuple[Problem, ...] = ()  # accepted, not (all) acted on: for the Honoured condition
    observability: MeshObservability = field(default_factory=MeshObservability)  # metrics and access logs

    def resolve(self, name: str) -> str | None:
        """The extensionProviders name `name` refers to; Istio matches provider names case-insensitively."""
        if name in self.providers:
            return name
        folded = name.casefold()
        return next((known for known in self.providers if known.casefold() == folded), None)


def _problem(error: ConfigError, reason: str = "InvalidMeshConfig") -> Problem:
    return Problem(MESH_RESOURCE, error.field, reason, error.problem, error.fix)


def read_mesh(mesh_spec: Mapping[str, Any], environ: Mapping[str, str] = NO_ENVIRONMENT) -> MeshTracing:
    """Never raises: a broken part is left out and reported; the rest is used.

    `environ` is the operator's environment, where header `envName`s are read, as istiod reads its own.
    """
    problems: list[Problem] = []
    notices: list[Problem] = []
    try:
        # Istio reads the mesh config with protobuf's JSON reader: snake_case field names are as good as camelCase.
        mesh_spec = camel_case_keys(mesh_spec if isinstance(mesh_spec, Mapping) else {}, "spec")
    except ConfigError as error:
        problems.append(_problem(error))
        mesh_spec = {}
    spec = Fields(mesh_spec, "spec")

    def attempt(read: Any, default: Any) -> Any:
        try:
            return read()
        except ConfigError as error:
            problems.append(_problem(error))
            return default

    root_namespace = attempt(lambda: spec.string("rootNamespace", DEFAULT_ROOT_NAMESPACE), DEFAULT_ROOT_NAMESPACE)
    enabled = attempt(lambda: spec.boolean("enableTracing", True), True)
    sampling = attempt(lambda: spec.mapping("defaultConfig").mapping("tracing").number(
        "sampling", DEFAULT_SAMPLING, minimum=0.0, maximum=100.0), DEFAULT_SAMPLING)
    providers, foreign = _read_providers(spec, environ, problems, notices)
    observability = read_observability(mesh_spec, problems, notices)
    mesh = MeshTracing(root_namespace, enabled, providers, foreign, None, sampling, (), observability=observability)
    default_provider = _read_default_provider(spec, mesh, problems, notices)
    notices.extend(_not_acted_on(mesh_spec))
    return replace(mesh, default_provider=default_provider, problems=tuple(problems), notices=tuple(notices))


def _read_providers(spec: Fields, environ: Mapping[str, str], problems: list[Problem],
                    notices: list[Problem]) -> tuple[dict[str, ProviderConfig], dict[str, str]]:
    providers: dict[str, ProviderConfig] = {}
    foreign: dict[str, str] = {}
    try:
        entries = list(spec.items("extensionProviders"))
    except ConfigError as error:
        problems.append(_problem(error))
        return providers, foreign
    for path, entry in entries:
        if not isinstance(entry, Mapping):
            problems.append(Problem(MESH_RESOURCE, path, "InvalidMeshConfig", "must be a mapping",
                                    "write it as {name: ..., zipkin: {...}}"))
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            problems.append(Problem(MESH_RESOURCE, f"{path}.name", "InvalidMeshConfig", "is empty or missing",
                                    "give every provider a name (Istio: empty extension provider name)"))
            continue
        if name in providers or name in foreign:
            problems.append(Problem(MESH_RESOURCE, f"{path}.name", "InvalidMeshConfig",
                                    f"{name!r} is used by an earlier provider", "give every provider its own name"))
            continue
        kind = provider_kind(entry)
        if kind in FOREIGN_KINDS:
            # Not a tracing provider we export to (access-log, ext-authz, or a foreign tracer): keep the name
            # so that a Telemetry naming it gets an error saying what it is, not "unknown".
            foreign[name] = kind
            if kind in ACTED_ON_KINDS:
                continue
            notices.append(Problem(MESH_RESOURCE, f"{path}.{kind}", "UnsupportedProvider",
                                   f"provider {name!r} is a {kind} provider; accepted, not acted on: tracemesh "
                                   f"sends spans to zipkin and opentelemetry providers, metrics to prometheus and "
                                   f"access logs to envoyFileAccessLog providers only",
                                   "use a provider of one of those kinds; remove it if nothing else reads it"))
            continue
        if kind not in PROVIDER_KINDS:
            # Istio's validateExtensionProvider: "unsupported provider" (none set, an unknown one, or two).
            kinds = ", ".join(sorted(str(key) for key in entry if key != "name")) or "no provider kind"
            problems.append(Problem(MESH_RESOURCE, path, "InvalidMeshConfig",
                                    f"provider {name!r} sets {kinds}, not exactly one kind of Istio's",
                                    "set one of zipkin, opentelemetry, or another kind of Istio's ExtensionProvider"))
            continue
        try:
            provider, provider_notices = read_provider(entry, path, environ)
        except ConfigError as error:
            problems.append(_problem(error))
            continue
        providers[provider.name] = provider
        notices.extend(provider_notices)
    return providers, foreign


def _not_acted_on(mesh_spec: Mapping[str, Any]) -> list[Problem]:
    """Istio's MeshConfig fields tracemesh accepts but does not act on: it acts on telemetry only."""
    notices = [Problem(MESH_RESOURCE, f"spec.{key}", "UnsupportedField",
                       "is accepted (as Istio accepts it) but not acted on: tracemesh acts on tracing, metrics "
                       "and access logs only",
                       "remove it, or keep it for Istio; it changes nothing here")
               for key in sorted(set(mesh_spec) - ACTED_ON)]
    proxy_config = mesh_spec.get("defaultConfig")
    if isinstance(proxy_config, Mapping):
        notices += [Problem(MESH_RESOURCE, f"spec.defaultConfig.{key}", "UnsupportedField",
                            "is a ProxyConfig field tracemesh's sidecar does not act on",
                            "remove it, or keep it for Istio; it changes nothing here")
                    for key in sorted(set(proxy_config) - ACTED_ON_PROXY_CONFIG)]
        metadata = proxy_config.get("proxyMetadata")
        notices += [Problem(MESH_RESOURCE, f"spec.defaultConfig.proxyMetadata.{key}", "UnsupportedField",
                            "becomes a variable in every injected proxy, which does not read it",
                            f"remove it, or keep it for Istio; tracemesh's proxy reads "
                            f"{' and '.join(sorted(ACTED_ON_PROXY_METADATA))}")
                    for key in sorted(set(metadata if isinstance(metadata, Mapping) else ()) - ACTED_ON_PROXY_METADATA)]
        tracing = proxy_config.get("tracing")
        # Istio's legacy tracing settings (zipkin.address, customTags, maxPathTagLength...): superseded by
        # extensionProviders and Telemetry; tracemesh reads only the default sampling.
        notices += [Problem(MESH_RESOURCE, f"spec.defaultConfig.tracing.{key}", "UnsupportedField",
                            "is a legacy ProxyConfig tracing setting tracemesh does not act on",
                            "configure it through extensionProviders and a Telemetry resource instead")
                    for key in sorted(set(tracing if isinstance(tracing, Mapping) else ()) - {"sampling"})]
    default_providers = mesh_spec.get("defaultProviders")
    if isinstance(default_providers, Mapping):
        notices += [Problem(MESH_RESOURCE, f"spec.defaultProviders.{key}", "UnknownField",
                            "is not a field of Istio's DefaultProviders; ignored, as Istio ignores unknown fields",
                            "use tracing, metrics or accessLogging")
                    for key in sorted(set(default_providers) - {"tracing", "metrics", "accessLogging"})]
    return notices


def _read_default_provider(spec: Fields, mesh: MeshTracing, problems: list[Problem],
                           notices: list[Problem]) -> str | None:
    try:
        names = [str(name) for _, name in spec.mapping("defaultProviders").items("tracing")]
    except ConfigError as error:
        problems.append(_problem(error))
        return None
    if not names:
        return None
    # Istio supports one tracing provider per proxy: the first one named (pilot/pkg/model/telemetry.go Tracing).
    if len(names) > 1:
        notices.append(Problem(MESH_RESOURCE, "spec.defaultProviders.tracing", "FirstProviderUsed",
                               f"names {len(names)} providers; {names[0]!r} is used and the others are ignored, "
                               f"as Istio does", "name one tracing provider"))
    resolved = mesh.resolve(names[0])
    if resolved is None:
        problems.append(Problem(MESH_RESOURCE, "spec.defaultProviders.tracing[0]", "UnknownProvider",
                                unknown_provider_problem(names[0], mesh.providers, mesh.foreign),
                                unknown_provider_fix(mesh.providers)))
    return resolved


def unknown_provider_problem(name: str, providers: Mapping[str, ProviderConfig], foreign: Mapping[str, str]) -> str:
    if name in foreign:
        return f"provider {name!r} is a {foreign[name]} provider, which tracemesh cannot send spans to"
    return f"provider {name!r} is not in the MeshConfig's extensionProviders"


def unknown_provider_fix(providers: Mapping[str, ProviderConfig]) -> str:
    if providers:
        return f"use one of: {', '.join(sorted(providers))}, or add it to extensionProviders"
    return "add a zipkin, opentelemetry or jaeger provider to the MeshConfig's extensionProviders"
