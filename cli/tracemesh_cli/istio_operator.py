"""An IstioOperator document (what `istioctl install -f` takes) -> tracemesh's MeshConfig, and what it cannot honour.

Pure. As istioctl does (operator/pkg/render/manifest.go MergeInputs), the files are overlaid in
order (mappings merge key by key, anything else is replaced) and then each `--set` is applied
under `spec.`. `spec.meshConfig` becomes the `spec` of the MeshConfig the operator reads
(istio-system/default, as manifests/meshconfig-default.yaml names it); with no `meshConfig` at
all, tracemesh's default MeshConfig is installed, as Istio installs its own defaults. Istio's
`default` profile sets no meshConfig, so the user's meshConfig is the whole configuration, with
Istio's defaults for what it leaves out (the operator reads it so: enableTracing true, 1% sampling).

Everything else in the document configures Istio's Helm charts, images or components, which
tracemesh does not have: each such setting is returned as NotHonoured, to be shown to the user.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tracemesh_cli.set_flags import apply_set_flag
from tracemesh_sidecar.config import ConfigError

API_VERSION = "install.istio.io/v1alpha1"
KIND = "IstioOperator"
# Profiles whose control plane is what tracemesh installs: istiod's equivalent and the CRDs.
PROFILES_HONOURED = ("default", "minimal")
CONTROL_PLANE_NAMESPACE = "istio-system"
# The meshConfig fields the operator acts on (operator/tracemesh_operator/compiler/mesh.py, workload.py);
# the others are kept in the MeshConfig, which preserves them, and reported as not acted on.
MESH_FIELDS_HONOURED = ("rootNamespace", "enableTracing", "trustDomain", "extensionProviders",
                        "defaultProviders.tracing", "defaultConfig.tracing.sampling", "defaultConfig.meshId",
                        # Empty, as the Zipkin task writes it: "disable legacy MeshConfig tracing options",
                        # which tracemesh never had. Legacy options under it (zipkin.address, ...) are reported.
                        "defaultConfig.tracing")
# The Helm value tracemesh honours, as the MeshConfig's sampling fallback (see _apply_pilot_trace_sampling).
PILOT_TRACE_SAMPLING = "pilot.traceSampling"
# The components tracemesh installs an equivalent of: their `enabled: true` is what it does anyway.
COMPONENTS_INSTALLED = ("base", "pilot")

_WHY = {
    "profile": "tracemesh installs one control plane (its operator and CRDs), as the default and minimal profiles "
               "do; this profile's other components are not installed",
    "hub": "tracemesh's images are set in manifests/operator.yaml (tracemesh/operator, tracemesh/proxy)",
    "tag": "tracemesh's images are set in manifests/operator.yaml (tracemesh/operator, tracemesh/proxy)",
    "revision": "tracemesh runs one control plane; revisions are not supported",
    "namespace": f"tracemesh's control plane runs in {CONTROL_PLANE_NAMESPACE}",
    "components": "tracemesh installs only its operator (istiod's equivalent) and CRDs; this component is not "
                  "installed or configured",
    "values": "Helm values configure Istio's charts, which tracemesh does not use",
    "meshConfig": "kept in the MeshConfig, but tracemesh acts only on its tracing settings",
}
_WHY_OTHER = "tracemesh install does not support this setting"


@dataclass(frozen=True, slots=True)
class NotHonoured:
    path: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}: {self.why}"


@dataclass(frozen=True, slots=True)
class InstallPlan:
    meshconfig: dict[str, Any]  # the MeshConfig resource to apply
    not_honoured: tuple[NotHonoured, ...]


def read_istio_operator(documents: Sequence[tuple[str, Any]], set_flags: Sequence[str],
                        default_meshconfig: Mapping[str, Any]) -> InstallPlan:
    """`documents`: (where it came from, the parsed YAML) per -f file. Raises ConfigError naming the field."""
    merged: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND, "spec": {}}
    for source, document in documents:
        _check_document(source, document)
        merged = _overlay(merged, document)
    for flag in set_flags:
        apply_set_flag(merged, flag)
    spec = merged.get("spec")
    if not isinstance(spec, dict):
        raise ConfigError("spec", f"is {spec!r}, not a mapping", "write the IstioOperator's settings under spec:")
    mesh = spec.get("meshConfig")
    if mesh is not None and not isinstance(mesh, dict):
        raise ConfigError("spec.meshConfig", f"is {mesh!r}, not a mapping",
                          "write the mesh settings under it, e.g. meshConfig: {enableTracing: true}")
    meshconfig = copy.deepcopy(dict(default_meshconfig))
    if mesh is not None:
        meshconfig["spec"] = copy.deepcopy(mesh)
    _apply_pilot_trace_sampling(meshconfig.setdefault("spec", {}), spec.get("values"))
    return InstallPlan(meshconfig, tuple(_not_honoured(spec)))


def _apply_pilot_trace_sampling(mesh: dict[str, Any], values: Any) -> None:
    """`values.pilot.traceSampling` becomes istiod's PILOT_TRACE_SAMPLING, the sampling percentage where neither a
    Telemetry nor `defaultConfig.tracing.sampling` sets one (pilot/pkg/networking/core/tracing.go,
    proxyConfigSamplingValue). tracemesh's MeshConfig has the one fallback, `defaultConfig.tracing.sampling`:
    the value goes there unless the meshConfig sets it itself, which keeps Istio's order of precedence."""
    sampling = _get(values, PILOT_TRACE_SAMPLING)
    if sampling is None:
        return
    tracing = mesh.setdefault("defaultConfig", {}).setdefault("tracing", {})
    if isinstance(tracing, dict):
        tracing.setdefault("sampling", sampling)


def _get(tree: Any, path: str) -> Any:
    for key in path.split("."):
        tree = tree.get(key) if isinstance(tree, Mapping) else None
    return tree


def _check_document(source: str, document: Any) -> None:
    if not isinstance(document, Mapping):
        raise ConfigError(source, "is not a YAML mapping", f"write an IstioOperator ({API_VERSION}) document")
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if (api_version, kind) != (API_VERSION, KIND):
        raise ConfigError(f"{source}: apiVersion/kind", f"is {api_version}/{kind}",
                          f"give an IstioOperator: apiVersion: {API_VERSION}, kind: {KIND}")


def _overlay(base: Any, overlay: Any) -> Any:
    if isinstance(base, dict) and isinstance(overlay, Mapping):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = _overlay(base.get(key), value)
        return merged
    return copy.deepcopy(overlay)


def _not_honoured(spec: Mapping[str, Any]) -> Iterable[NotHonoured]:
    for key, value in spec.items():
        path = f"spec.{key}"
        if key == "meshConfig":
            yield from (NotHonoured(f"{path}.{field}", _WHY["meshConfig"]) for field in _mesh_fields_ignored(value))
        elif key == "profile":
            if value not in PROFILES_HONOURED:
                yield NotHonoured(f"{path}: {value}", _WHY["profile"])
        elif key == "namespace":
            if value != CONTROL_PLANE_NAMESPACE:
                yield NotHonoured(f"{path}: {value}", _WHY["namespace"])
        elif key == "components" and isinstance(value, Mapping):
            yield from (NotHonoured(f"{path}.{name}", _WHY["components"]) for name, component in value.items()
                        if not _installed_anyway(name, component))
        elif key == "values" and isinstance(value, Mapping):
            yield from (NotHonoured(f"{path}.{leaf}", _WHY["values"]) for leaf in _leaves(value)
                        if leaf != PILOT_TRACE_SAMPLING)
        else:
            yield NotHonoured(path, _WHY.get(key, _WHY_OTHER))


def _installed_anyway(name: str, component: Any) -> bool:
    """`components.pilot: {enabled: true}` asks for what tracemesh installs; any other setting of it is not applied."""
    return name in COMPONENTS_INSTALLED and isinstance(component, Mapping) and set(component) <= {"enabled"} \
        and component.get("enabled", True) is True


def _mesh_fields_ignored(mesh: Any) -> list[str]:
    if not isinstance(mesh, Mapping):
        return []
    return [leaf for leaf in _leaves(mesh) if not any(
        leaf == honoured or (leaf.startswith(honoured + ".") and honoured != "defaultConfig.tracing")
        for honoured in MESH_FIELDS_HONOURED)]


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths to every setting: non-empty mappings are descended into, anything else is a leaf."""
    leaves = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            leaves += _leaves(value, path + ".")
        else:
            leaves.append(path)
    return leaves
