"""Which build of the sidecar runs: its request path compiled by mypyc, or pure Python.

setup.py compiles the request path into C extensions beside their sources and records each source's
hash in compiled.json. Python imports an extension before its source; the package's __init__ calls
`select()` first, which puts the sources first instead, for every compiled module at once (compiled
modules call each other's native classes directly, so a mix would not work), when:
- TRACEMESH_PURE_PYTHON=1: for debugging, for profiles with Python frames, for monkeypatching;
- a compiled module's source changed since the build (an edited checkout): a stale extension would
  silently run the old code. `make venv` compiles again.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

PURE_PYTHON_ENV = "TRACEMESH_PURE_PYTHON"
PACKAGE = "tracemesh_sidecar"
MANIFEST = "compiled.json"  # written by setup.py: {"proxy/exchange.py": sha256 of the source compiled, ...}


@dataclass(frozen=True)
class Build:
    compiled: bool
    why: str  # said once at start (`tracemesh proxy`) and by `python -m bench`

    def describe(self) -> str:
        return f"{'compiled (mypyc)' if self.compiled else 'pure Python'}: {self.why}"


class SourcesFirst:
    """A meta path finder that imports the named modules from their .py files."""

    def __init__(self, sources: dict[str, Path]) -> None:
        self._sources = sources

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        source = self._sources.get(fullname)
        return None if source is None else importlib.util.spec_from_file_location(fullname, source)


def source_digest(source: Path) -> str:
    """What compiled.json records of each compiled source (setup.py writes it, `select()` compares)."""
    return hashlib.sha256(source.read_bytes()).hexdigest()


def _module_name(package_dir: Path, source: Path) -> str:
    return ".".join((PACKAGE, *source.relative_to(package_dir).with_suffix("").parts))


def _has_extension(source: Path) -> bool:
    stem = source.with_suffix("")
    return any(Path(f"{stem}{suffix}").exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def select(package_dir: Path, environ: Mapping[str, str] = os.environ) -> Build:
    """Decide the build; for pure Python over a compiled one, put the sources first on sys.meta_path."""
    try:
        hashes: dict[str, str] = json.loads((package_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        hashes = {}
    sources = {_module_name(package_dir, path): path for path in
               (package_dir / name for name in hashes) if _has_extension(path)}
    if not hashes or len(sources) < len(hashes):
        # Extensions without a complete manifest (left by an earlier build) are never run.
        leftovers = {_module_name(package_dir, path): path
                     for path in package_dir.rglob("*.py") if _has_extension(path)}
        if leftovers:
            sys.meta_path.insert(0, SourcesFirst(leftovers))
        return Build(False, "built without mypyc")
    if environ.get(PURE_PYTHON_ENV) == "1":
        why = f"{PURE_PYTHON_ENV}=1"
    else:
        changed = [name for name, digest in hashes.items() if source_digest(package_dir / name) != digest]
        if not changed:
            return Build(True, f"{len(hashes)} modules of the request path")
        why = f"changed since the compiled build: {', '.join(changed)} (`make venv` compiles again)"
        print(f"tracemesh: running pure Python, {why}", file=sys.stderr)
    sys.meta_path.insert(0, SourcesFirst(sources))
    return Build(False, why)
