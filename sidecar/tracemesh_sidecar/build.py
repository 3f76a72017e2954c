"""Which build runs: the sidecar's request path and the collector's store compiled by mypyc, or pure Python.

setup.py compiles them into C extensions beside their sources (one group: tracemesh_sidecar__mypyc)
and records each source's hash in the sidecar's compiled.json. Python imports an extension before
its source; the sidecar package's __init__ calls `select()` first (the collector's imports the
sidecar before any module of its own), which puts the sources first instead, for every compiled
module of both packages at once (compiled modules call each other's native classes directly, so a
mix would not work), when:
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
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

PURE_PYTHON_ENV = "TRACEMESH_PURE_PYTHON"
PACKAGE = "tracemesh_sidecar"
# The packages setup.py compiles modules of; the manifest, in PACKAGE, names each module by its package:
# {"tracemesh_sidecar/proxy/exchange.py": sha256 of the source compiled, "tracemesh_collector/store.py": ...}
PACKAGES = (PACKAGE, "tracemesh_collector")
MANIFEST = "compiled.json"
# The one manifest entry that is not a module: how gcc optimized the C (setup.py's TRACEMESH_PGO), said with the
# build, since an instrumented build runs slower and writes counts, and benchmarks name the build they measured.
PROFILE_KEY = "#profile"
PROFILES = {"generate": "instrumented for PGO: counting what runs, slower", "use": "profile-guided (gcc PGO)"}


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


def manifest_key(package: str, package_dir: Path, source: Path) -> str:
    """How the manifest names a compiled source: its package, then its path in the package."""
    return "/".join((package, *source.relative_to(package_dir).parts))


def package_location(package: str) -> Path | None:
    """Where an installed (or checked-out) top-level package's modules are, without importing it."""
    spec = importlib.util.find_spec(package)
    locations = spec.submodule_search_locations if spec is not None else None
    return Path(locations[0]) if locations else None


def _module_name(key: str) -> str:
    return ".".join(Path(key).with_suffix("").parts)


def _has_extension(source: Path) -> bool:
    stem = source.with_suffix("")
    return any(Path(f"{stem}{suffix}").exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def select(package_dir: Path, environ: Mapping[str, str] = os.environ,
           locate: Callable[[str], Path | None] = package_location) -> Build:
    """Decide the build; for pure Python over a compiled one, put the sources first on sys.meta_path.
    `package_dir` is PACKAGE's directory; `locate` finds the other PACKAGES'."""
    try:
        hashes: dict[str, str] = json.loads((package_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        hashes = {}
    profile = hashes.pop(PROFILE_KEY, None)
    package_dirs = {package: package_dir if package == PACKAGE else locate(package) for package in PACKAGES}
    paths = {key: _source(package_dirs, key) for key in hashes}
    sources = {_module_name(key): path for key, path in paths.items() if path is not None and _has_extension(path)}
    if not hashes or len(sources) < len(hashes):
        # Extensions without a complete manifest (left by an earlier build) are never run.
        leftovers = {_module_name(manifest_key(package, directory, path)): path
                     for package, directory in package_dirs.items() if directory is not None
                     for path in directory.rglob("*.py") if _has_extension(path)}
        if leftovers:
            sys.meta_path.insert(0, SourcesFirst(leftovers))
        return Build(False, "built without mypyc")
    if environ.get(PURE_PYTHON_ENV) == "1":
        why = f"{PURE_PYTHON_ENV}=1"
    else:
        changed = [key for key, digest in hashes.items() if source_digest(sources[_module_name(key)]) != digest]
        if not changed:
            counts = Counter(key.split("/", 1)[0] for key in hashes)
            return Build(True, f"{counts[PACKAGE]} modules of the sidecar's request path, "
                               f"{counts['tracemesh_collector']} of the collector's store"
                               + (f"; {profile}" if profile else ""))
        why = f"changed since the compiled build: {', '.join(changed)} (`make venv` compiles again)"
        print(f"tracemesh: running pure Python, {why}", file=sys.stderr)
    sys.meta_path.insert(0, SourcesFirst(sources))
    return Build(False, why)


def _source(package_dirs: Mapping[str, Path | None], key: str) -> Path | None:
    package, _, path = key.partition("/")
    directory = package_dirs.get(package)
    return None if directory is None else directory / path
