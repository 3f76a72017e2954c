"""Where the mesh config comes from: tracemesh's MeshConfig resource, or Istio's mesh ConfigMap. Pure.

Helm-installed Istio keeps its mesh config in ConfigMap `istio` of the root namespace, key `mesh`:
a YAML MeshConfig document with no `spec` wrapper. The operator reads it too, so that a cluster
moving from Istio keeps its configuration as it is.

Precedence: the MeshConfig resource (`istio-system/default`, or the operator's `--meshconfig`) wins
when it exists; it is tracemesh's own and carries a status. The ConfigMap in the same namespace is
used when there is no MeshConfig resource. When both exist, the MeshConfig's Ready condition says
that the ConfigMap is ignored, so nobody edits the one that has no effect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

ISTIO_MESH_CONFIGMAP = "istio"  # Istio's Helm chart: ConfigMap `istio`, key `mesh`
MESH_KEY = "mesh"
Body = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class MeshSource:
    resource: str  # e.g. "MeshConfig istio-system/default" or "ConfigMap istio-system/istio"
    spec: Mapping[str, Any]
    error: str | None = None  # the ConfigMap's `mesh` is no YAML mapping: nothing of it can be used
    shadowed: str | None = None  # the other source exists too, and is ignored: what to tell the user


def configmap_key(mesh_config: str) -> str:
    """The `namespace/name` of Istio's mesh ConfigMap next to the MeshConfig `mesh_config` (`namespace/name`)."""
    namespace = mesh_config.partition("/")[0]
    return f"{namespace}/{ISTIO_MESH_CONFIGMAP}"


def configmap_mesh(body: Body) -> tuple[Mapping[str, Any], str | None]:
    """The mesh config a ConfigMap's `mesh` key holds, or an error saying why it cannot be read."""
    data = body.get("data")
    text = data.get(MESH_KEY) if isinstance(data, Mapping) else None
    if text is None:
        return {}, f"has no key {MESH_KEY!r} in data; put Istio's mesh config (YAML) under data.{MESH_KEY}"
    try:
        document = yaml.safe_load(str(text))
    except yaml.YAMLError as error:
        return {}, f"data.{MESH_KEY} is not YAML ({error}); fix the YAML"
    if document is None:
        return {}, None
    if not isinstance(document, Mapping):
        return {}, f"data.{MESH_KEY} is not a mapping; write it as Istio's MeshConfig fields (enableTracing: true ...)"
    return document, None


def mesh_source(meshconfigs: Mapping[str, Iterable[Body]], configmaps: Mapping[str, Iterable[Body]],
                mesh_config: str) -> MeshSource | None:
    """The mesh config in force by the precedence above, or None when neither exists."""
    resource = next(iter(meshconfigs.get(mesh_config, ())), None)
    configmap_name = configmap_key(mesh_config)
    configmap = next(iter(configmaps.get(configmap_name, ())), None)
    if resource is not None:
        spec = resource.get("spec")
        shadowed = (f"ConfigMap {configmap_name} (key {MESH_KEY}) also holds a mesh config; this MeshConfig takes "
                    f"precedence and the ConfigMap is ignored") if configmap is not None else None
        return MeshSource(f"MeshConfig {mesh_config}", spec if isinstance(spec, Mapping) else {}, shadowed=shadowed)
    if configmap is None:
        return None
    spec, error = configmap_mesh(configmap)
    return MeshSource(f"ConfigMap {configmap_name}", spec, error)
