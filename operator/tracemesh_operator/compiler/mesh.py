"""MeshConfig `spec` -> the mesh-wide tracing settings every compile starts from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tracemesh_operator.compiler.model import Problem
from tracemesh_sidecar.config import ConfigError, ProviderConfig
from tracemesh_sidecar.config.fields import Fields
from tracemesh_sidecar.config.model import PROVIDER_KINDS, parse_provider

DEFAULT_ROOT_NAMESPACE = "istio-system"
DEFAULT_SAMPLING = 1.0  # Istio's defaultConfig.tracing.sampling default
MESH_RESOURCE = "MeshConfig"


@dataclass(frozen=True, slots=True)
class MeshTracing:
    root_namespace: str
    enabled: bool
    providers: Mapping[str, ProviderConfig]
    foreign: Mapping[str, str]  # provider name -> its kind, for tracing providers tracemesh does not support
    default_provider: str | None
    default_sampling: float
    problems: tuple[Problem, ...]

    def resolve(self, name: str) -> str | None:
        """The extensionProviders name `name` refers to; Istio matches provider names case-insensitively."""
        if name in self.providers:
            return name
        folded = name.casefold()
        return next((known for known in self.providers if known.casefold() == folded), None)


def _problem(error: ConfigError, reason: str = "InvalidMeshConfig") -> Problem:
    return Problem(MESH_RESOURCE, error.field, reason, error.problem, error.fix)


def read_mesh(mesh_spec: Mapping[str, Any]) -> MeshTracing:
    """Never raises: a broken part is left out and reported; the rest is used."""
    problems: list[Problem] = []
    spec = Fields(mesh_spec if isinstance(mesh_spec, Mapping) else {}, "spec")

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
    providers, foreign = _read_providers(spec, problems)
    mesh = MeshTracing(root_namespace, enabled, providers, foreign, None, sampling, ())
    default_provider = _read_default_provider(spec, mesh, problems)
    return replace(mesh, default_provider=default_provider, problems=tuple(problems))


def _read_providers(spec: Fields, problems: list[Problem]) -> tuple[dict[str, ProviderConfig], dict[str, str]]:
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
        if name in providers or name in foreign:
            problems.append(Problem(MESH_RESOURCE, f"{path}.name", "InvalidMeshConfig",
                                    f"{name!r} is used by an earlier provider", "give every provider its own name"))
            continue
        kinds = set(entry) - {"name"}
        if not kinds & set(PROVIDER_KINDS):
            # Not a tracing provider we export to (access-log, ext-authz, or a foreign tracer): keep the name
            # so that a Telemetry naming it gets an error saying what it is, not "unknown".
            if isinstance(name, str):
                foreign[name] = ", ".join(sorted(kinds)) or "empty"
            continue
        try:
            provider = parse_provider(Fields(entry, path))
        except ConfigError as error:
            problems.append(_problem(error))
            continue
        providers[provider.name] = provider
    return providers, foreign


def _read_default_provider(spec: Fields, mesh: MeshTracing, problems: list[Problem]) -> str | None:
    try:
        names = [str(name) for _, name in spec.mapping("defaultProviders").items("tracing")]
    except ConfigError as error:
        problems.append(_problem(error))
        return None
    if not names:
        return None
    # Istio supports one tracing provider per proxy: the first one named.
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
