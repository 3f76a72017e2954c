"""What `tracemesh install` applies, read from manifests/: the CRDs, the control plane, the default MeshConfig.

The control plane is the kustomization's `resources` (what `kubectl apply -k manifests/` applies),
less the CRDs (applied first, then waited for) and the default MeshConfig (replaced by the one
the IstioOperator asks for, applied last).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tracemesh_sidecar.config import ConfigError

# The repository's manifests/ (cli/tracemesh_cli/ is two levels below the root).
DEFAULT_MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
CRD_KIND = "CustomResourceDefinition"
MESHCONFIG_KIND = "MeshConfig"


@dataclass(frozen=True, slots=True)
class ControlPlaneManifests:
    crds: tuple[dict[str, Any], ...]
    control_plane: tuple[dict[str, Any], ...]  # in the kustomization's order: the Namespace first
    default_meshconfig: dict[str, Any]


def read_manifests(directory: Path = DEFAULT_MANIFESTS) -> ControlPlaneManifests:
    kustomization = directory / "kustomization.yaml"
    if not kustomization.is_file():
        raise ConfigError("--manifests", f"{directory} has no kustomization.yaml",
                          "point --manifests at tracemesh's manifests/ directory")
    crds = [doc for path in sorted((directory / "crds").glob("*.yaml")) for doc in _documents(path)]
    resources = yaml.safe_load(kustomization.read_text()).get("resources") or []
    objects = [doc for name in resources for doc in _documents(directory / str(name))]
    meshconfigs = [doc for doc in objects if doc.get("kind") == MESHCONFIG_KIND]
    if len(meshconfigs) != 1:
        raise ConfigError(str(kustomization), f"lists {len(meshconfigs)} MeshConfig documents",
                          "list exactly one: the MeshConfig the operator reads (--meshconfig)")
    control_plane = [doc for doc in objects if doc.get("kind") not in (CRD_KIND, MESHCONFIG_KIND)]
    return ControlPlaneManifests(tuple(crds), tuple(control_plane), meshconfigs[0])


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]
