"""The build's one decision beyond pyproject.toml: compile the sidecar's request path and the collector's
store with mypyc.

The proxy core, tracing, the span codecs, the config model, telemetry, stats and the exporters' span queues are
compiled into C extensions beside their sources (about 30% less CPU per proxied request: `python -m bench proxy`
runs a pure pair beside the compiled one), and so are the collector's store, its indexes and its Zipkin decoding
(`python -m bench.collector` measures its ingest). Where mypyc, a C compiler or Python's headers are missing,
or where compiling fails, the package builds as pure Python, which is also the fallback at run time
(`TRACEMESH_PURE_PYTHON=1`, or a source edited since the build: see tracemesh_sidecar/build.py).

TRACEMESH_MYPYC: `auto` (the default: compile when possible), `1` (compile or fail: the images, CI),
`0` (pure Python). Compiling needs mypy and the stubs the type check uses (the `compile` extra), so it
runs with `pip install --no-build-isolation` in an environment that has them (`make venv`, the images'
build stage); an isolated `pip install .` builds pure Python.

TRACEMESH_PGO: the C compiled with gcc's profile-guided optimization, in three steps (`make venv` and the
images' build stage take them): `generate` builds extensions that count what runs, into build/pgo-objects, when
their process exits; `python -m bench.pgo_training` runs them under load; `use` builds again, optimized by those
counts (hot code laid out together, hot calls inlined), or stops if there are none. Unset: no profile.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

ROOT = Path(__file__).parent
PACKAGE = ROOT / "sidecar" / "tracemesh_sidecar"  # where the manifest goes (build.py reads it there)
COLLECTOR = ROOT / "collector" / "tracemesh_collector"
# The request path, by package; the modules of each are compiled but for EXCLUDED.
COMPILED_PACKAGES = ["proxy", "tracing", "spans", "config", "telemetry"]
# Beside them: stats, and the exporters' span queues (every finished span is submitted on the request path).
COMPILED_MODULES = ["stats.py", "export/exporter_set.py", "export/provider_exporter.py"]
EXCLUDED = {
    # The shells that run once per config, not per request; runtime.py's ListenerError is an OSError,
    # and mypyc compiles exception classes derived from Exception only.
    "proxy/runtime.py",
    "proxy/file_source.py",
    # One syscall per connection; tests replace it on the modules that import it.
    "proxy/origdst.py",
    # msgspec reads a Struct's field types from its class annotations, which a compiled module does not keep.
    "spans/zipkin_schema.py",
}
# The collector's ingest and query path: what every reported span passes through (SpanStore.add), the searches
# and the dependency count. Its HTTP and gRPC shells stay interpreted.
COLLECTOR_MODULES = ["store.py", "span_interning.py", "term_index.py", "trace_index.py", "dependency_index.py",
                     "dependencies.py", "query.py", "trace_merge.py", "zipkin_v2_json.py"]


def _build_rules() -> ModuleType:
    """tracemesh_sidecar/build.py, loaded by path (not through the package, whose import selects a build):
    the manifest's name and digest are defined there once, for this build and the run-time check."""
    spec = importlib.util.spec_from_file_location("_tracemesh_build", PACKAGE / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


BUILD = _build_rules()
MANIFEST = BUILD.MANIFEST  # each compiled module's source digest: build.py runs no stale extension


def compiled_sources() -> list[Path]:
    sources = [PACKAGE / name for name in COMPILED_MODULES]
    for package in COMPILED_PACKAGES:
        sources += sorted(path for path in (PACKAGE / package).rglob("*.py") if path.name != "__init__.py")
    sources = [path for path in sources if path.relative_to(PACKAGE).as_posix() not in EXCLUDED]
    return sources + [COLLECTOR / name for name in COLLECTOR_MODULES]


def write_manifest(sources: list[Path]) -> None:
    hashes = {}
    for path in sources:
        package, package_dir = (BUILD.PACKAGE, PACKAGE) if PACKAGE in path.parents else (COLLECTOR.name, COLLECTOR)
        hashes[BUILD.manifest_key(package, package_dir, path)] = BUILD.source_digest(path)
    profile = BUILD.PROFILES.get(pgo_mode())
    if profile:
        hashes[BUILD.PROFILE_KEY] = profile
    (PACKAGE / MANIFEST).write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")


def build_mode() -> str:
    mode = os.environ.get("TRACEMESH_MYPYC", "auto")
    if mode not in ("auto", "0", "1"):
        sys.exit(f"TRACEMESH_MYPYC={mode!r}: use auto, 1 (compile or fail) or 0 (pure Python)")
    return mode


PGO_ENV = "TRACEMESH_PGO"
# Where both builds put their object files, and gcc the counts, beside each object (its .gcda): the same place
# each time, which an editable install's new temporary directory per build is not.
PGO_BUILD_TEMP = ROOT / "build" / "pgo-objects"
# The extension whose counts `use` requires: the group's shared library, where all the compiled code is (each
# module's own extension is a shim that imports it; a shim the training did not import has no counts).
PROFILED_LIBRARY = "tracemesh_sidecar__mypyc"
PGO_TRAINING = "python -m bench.pgo_training"
# With gcc or clang, always. The compiled modules and mypyc's runtime call each other inside one shared library:
# hidden symbols and no semantic interposition make those calls direct (and inlinable) instead of through the
# PLT; only PyInit_* (PyMODINIT_FUNC) is exported, which is all Python looks up.
DIRECT_CALL_FLAGS = ["-fvisibility=hidden", "-fno-semantic-interposition"]


def pgo_mode() -> str:
    mode = os.environ.get(PGO_ENV, "")
    if mode and mode not in BUILD.PROFILES:  # build.py names the modes, with what the built package says of each
        sys.exit(f"{PGO_ENV}={mode!r}: use generate (an instrumented build), use (the build the counts optimize), "
                 f"or leave it unset")
    return mode


def counts_of(object_file: str) -> Path:
    """Where an instrumented object's code writes its counts and -fprofile-use reads them: beside the object."""
    return Path(object_file).with_suffix(".gcda")


def pure_python(why: str, fix: str) -> list[object]:
    """No extensions, saying why; with TRACEMESH_MYPYC=1, the build stops there instead, saying how to fix it."""
    if build_mode() == "1":
        sys.exit(f"TRACEMESH_MYPYC=1 but {why}: {fix}")
    print(f"tracemesh: {why}, building pure Python", file=sys.stderr)
    return []


class BuildExtOrPurePython(build_ext):
    """build_ext, but in `auto` mode a compiler or linker that fails leaves a pure-Python build: the manifest
    goes, so build.py runs no extension this build may have left half made. `1` lets the failure stop the
    build."""

    def run(self) -> None:
        if pgo_mode() == "generate":
            shutil.rmtree(PGO_BUILD_TEMP, ignore_errors=True)  # an older build's counts would add to the new ones
        try:
            super().run()
        except (CCompilerError, ExecError, PlatformError) as error:  # compile, link, or the compiler's spawn
            if build_mode() != "auto":
                raise
            print(f"tracemesh: compiling failed ({error}), building pure Python", file=sys.stderr)
            (PACKAGE / MANIFEST).unlink(missing_ok=True)
            self.extensions = []  # nothing for an editable or wheel build to collect

    def get_outputs(self) -> list[str]:
        return super().get_outputs() if self.extensions else []

    def finalize_options(self) -> None:
        super().finalize_options()
        if pgo_mode():
            self.build_temp = str(PGO_BUILD_TEMP)

    def build_extension(self, ext: Extension) -> None:
        if self.compiler.compiler_type == "unix":
            ext.extra_compile_args = [*ext.extra_compile_args, *DIRECT_CALL_FLAGS, *self._pgo_compile_args(ext)]
            ext.extra_link_args = [*ext.extra_link_args, *self._pgo_link_args()]
        super().build_extension(ext)

    def _pgo_compile_args(self, ext: Extension) -> list[str]:
        mode = pgo_mode()
        if mode == "generate":
            return ["-fprofile-generate"]
        if mode == "use":
            counts = (counts_of(self.compiler.object_filenames(ext.sources[:1], output_dir=self.build_temp)[0])
                      if ext.name == PROFILED_LIBRARY else None)
            if counts is not None and not counts.exists():
                sys.exit(f"{PGO_ENV}=use but {ext.name} has no counts ({counts} is missing): build with "
                         f"{PGO_ENV}=generate, run `{PGO_TRAINING}`, then build again with {PGO_ENV}=use "
                         f"(`make venv` takes the three steps)")
            # Partial training: code the training did not run is optimized as without a profile, not for size.
            return ["-fprofile-use", "-fprofile-partial-training", "-Wno-missing-profile"]
        return []

    def _pgo_link_args(self) -> list[str]:
        return ["-fprofile-generate"] if pgo_mode() == "generate" else []


def mypyc_extensions() -> list[object]:
    mode = build_mode()
    (PACKAGE / MANIFEST).unlink(missing_ok=True)
    if mode == "0":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return pure_python("mypyc is not importable",
                           "install the `compile` extra and build with pip's --no-build-isolation")
    missing = [] if shutil.which(str(sysconfig.get_config_var("CC") or "cc").split()[0]) else ["a C compiler"]
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        missing.append("Python's headers")
    if missing:
        return pure_python(f"there is no {' and no '.join(missing)}",
                           "install them (Debian: gcc libc6-dev python3-dev)")
    sources = compiled_sources()
    try:
        # group_name: the modules' shared library is the top-level tracemesh_sidecar__mypyc, not a hashed name.
        extensions = mypycify([str(path.relative_to(ROOT)) for path in sources], group_name="tracemesh_sidecar",
                              opt_level=os.environ.get("MYPYC_OPT_LEVEL", "3"))
    except SystemExit:  # mypyc's type check failed (it has printed why)
        return pure_python("mypyc could not compile the request path and the collector's store",
                           "fix the type errors it printed")
    write_manifest(sources)
    return list(extensions)


if __name__ == "__main__":  # as setuptools' build backend runs it; tests import the build_ext class
    setup(ext_modules=mypyc_extensions(), cmdclass={"build_ext": BuildExtOrPurePython})
