"""Reading the demo's mesh configuration: the same Telemetry and MeshConfig YAML a cluster is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

import tracemesh_bookinfo

# samples/bookinfo/, next to the Bookinfo package (a source checkout or an editable install).
SAMPLES_DIR = Path(tracemesh_bookinfo.__file__).resolve().parent.parent
DEFAULT_TELEMETRY = SAMPLES_DIR / "telemetry.yaml"
DEFAULT_MESH_CONFIG = SAMPLES_DIR / "meshconfig.yaml"
# Istio's own file, as `kubectl apply -f samples/bookinfo/networking/bookinfo-gateway.yaml` takes it.
DEFAULT_GATEWAY_ROUTES = SAMPLES_DIR / "networking" / "bookinfo-gateway.yaml"
NETWORKING_KINDS = ("Gateway", "VirtualService", "DestinationRule")


class InputError(ValueError):
    """A file the demo reads is missing or is not what it should be; the message names the file and flag."""


def _documents(path: Path, flag: str) -> list[Any]:
    try:
        text = path.read_text()
    except OSError as error:
        raise InputError(f"{flag} {path}: cannot read it ({error.strerror}); pass an existing file") from None
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        raise InputError(f"{flag} {path}: not valid YAML ({error}); fix the file") from None


def _kind_check(path: Path, flag: str, index: int, doc: Any, kind: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        found = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
        raise InputError(f"{flag} {path}: document {index + 1} is {found!r}, not a {kind}; "
                         f"give a file of {kind} resources")
    return doc


def read_telemetries(path: Path) -> list[dict[str, Any]]:
    """Every Telemetry object in the file (several may be separated by `---`)."""
    docs = _documents(path, "--telemetry")
    return [_kind_check(path, "--telemetry", index, doc, "Telemetry") for index, doc in enumerate(docs)]


def read_mesh_spec(path: Path) -> dict[str, Any]:
    """The `spec` of the one MeshConfig in the file."""
    docs = _documents(path, "--mesh-config")
    if len(docs) != 1:
        raise InputError(f"--mesh-config {path}: holds {len(docs)} documents; give exactly one MeshConfig")
    spec = _kind_check(path, "--mesh-config", 0, docs[0], "MeshConfig").get("spec") or {}
    if not isinstance(spec, dict):
        raise InputError(f"--mesh-config {path}: spec is not a mapping; write the MeshConfig fields under spec")
    return spec


def read_networking(path: Path) -> list[dict[str, Any]]:
    """The Istio Gateways, VirtualServices and DestinationRules in the file."""
    docs = _documents(path, "--gateway-routes")
    for index, doc in enumerate(docs):
        if not isinstance(doc, dict) or doc.get("kind") not in NETWORKING_KINDS:
            found = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
            raise InputError(f"--gateway-routes {path}: document {index + 1} is {found!r}; give a file of "
                             f"{', '.join(NETWORKING_KINDS)} resources")
    return docs
