"""Which build runs (tracemesh_sidecar/build.py): the mypyc-compiled request path and collector store, or pure
Python when asked, when a source changed since the build, or when extensions have no complete manifest."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import tracemesh_sidecar
from tracemesh_collector import store
from tracemesh_sidecar.build import MANIFEST, PROFILE_KEY, PROFILES, PURE_PYTHON_ENV, select
from tracemesh_sidecar.proxy import exchange

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


@pytest.fixture(autouse=True)
def own_meta_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))


def package(tmp_path: Path, *, compiled: dict[str, str], manifest: bool = True) -> Path:
    """The sidecar package's directory, with the given sources ("tracemesh_sidecar/stats.py",
    "tracemesh_collector/store.py") under tmp_path, each with a (fake) extension beside it."""
    for name, text in compiled.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.with_suffix(SUFFIX).write_bytes(b"\x7fELF")
    root = tmp_path / "tracemesh_sidecar"
    root.mkdir(exist_ok=True)
    if manifest:
        hashes = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in compiled.items()}
        (root / MANIFEST).write_text(json.dumps(hashes))
    return root


def beside(root: Path) -> Callable[[str], Path | None]:
    """Where select() finds the other packages: beside the sidecar's, as in site-packages."""
    return lambda package: root.parent / package


BOTH = {"tracemesh_sidecar/proxy/exchange.py": "x = 1\n", "tracemesh_sidecar/stats.py": "y = 2\n",
        "tracemesh_collector/store.py": "z = 3\n"}


def source_of(name: str) -> str | None:
    for finder in sys.meta_path:
        spec = finder.find_spec(name, None)
        if spec is not None:
            return spec.origin
    return None


def test_a_build_without_mypyc_runs_as_it_is() -> None:
    before = list(sys.meta_path)
    build = select(Path("/nonexistent"), {}, lambda package: None)
    assert (build.compiled, build.why) == (False, "built without mypyc")
    assert sys.meta_path == before


def test_a_complete_compiled_build_runs_compiled(tmp_path: Path) -> None:
    before = list(sys.meta_path)
    root = package(tmp_path, compiled=BOTH)
    build = select(root, {}, beside(root))
    assert build.compiled
    assert build.describe() == ("compiled (mypyc): 2 modules of the sidecar's request path, "
                                "1 of the collector's store")
    assert sys.meta_path == before  # the extensions are what Python imports first anyway


@pytest.mark.parametrize(("mode", "said"), [("use", "; profile-guided (gcc PGO)"),
                                            ("generate", "; instrumented for PGO: counting what runs, slower")])
def test_a_profiled_or_instrumented_build_says_so(tmp_path: Path, mode: str, said: str) -> None:
    root = package(tmp_path, compiled=BOTH)
    hashes = json.loads((root / MANIFEST).read_text())
    (root / MANIFEST).write_text(json.dumps({**hashes, PROFILE_KEY: PROFILES[mode]}))
    build = select(root, {}, beside(root))
    assert build.compiled  # the profile's entry is no module a complete manifest lacks
    assert build.describe() == ("compiled (mypyc): 2 modules of the sidecar's request path, "
                                f"1 of the collector's store{said}")


def test_tracemesh_pure_python_puts_every_compiled_modules_source_first(tmp_path: Path) -> None:
    root = package(tmp_path, compiled=BOTH)
    build = select(root, {PURE_PYTHON_ENV: "1"}, beside(root))
    assert not build.compiled and build.why == "TRACEMESH_PURE_PYTHON=1"
    assert source_of("tracemesh_sidecar.proxy.exchange") == str(root / "proxy/exchange.py")
    assert source_of("tracemesh_sidecar.stats") == str(root / "stats.py")
    assert source_of("tracemesh_collector.store") == str(tmp_path / "tracemesh_collector/store.py")


@pytest.mark.parametrize("edited", ["tracemesh_sidecar/stats.py", "tracemesh_collector/store.py"])
def test_a_source_changed_since_the_build_runs_everything_pure_and_says_which(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], edited: str) -> None:
    """In either package: the collector's compiled store calls the sidecar's native span class directly, and the
    sidecar's compiled modules the collector's, so one edited source puts both packages' sources first."""
    root = package(tmp_path, compiled=BOTH)
    (tmp_path / edited).write_text("edited = True\n")
    build = select(root, {}, beside(root))
    assert not build.compiled and build.why.startswith(f"changed since the compiled build: {edited} (")
    assert "running pure Python" in capsys.readouterr().err
    assert source_of("tracemesh_sidecar.proxy.exchange") == str(root / "proxy/exchange.py")  # not a mix
    assert source_of("tracemesh_collector.store") == str(tmp_path / "tracemesh_collector/store.py")


@pytest.mark.parametrize("case", ["no manifest", "a module without its extension", "a package not found"])
def test_extensions_without_a_complete_manifest_are_never_run(tmp_path: Path, case: str) -> None:
    root = package(tmp_path, compiled=BOTH, manifest=case != "no manifest")
    if case == "a module without its extension":
        (root / "config.py").write_text("w = 4\n")
        hashes = json.loads((root / MANIFEST).read_text())
        hashes["tracemesh_sidecar/config.py"] = hashlib.sha256(b"w = 4\n").hexdigest()
        (root / MANIFEST).write_text(json.dumps(hashes))
    build = select(root, {}, beside(root) if case != "a package not found" else lambda package: None)
    assert not build.compiled and build.why == "built without mypyc"
    assert source_of("tracemesh_sidecar.proxy.exchange") == str(root / "proxy/exchange.py")
    if case != "a package not found":
        assert source_of("tracemesh_collector.store") == str(tmp_path / "tracemesh_collector/store.py")


@pytest.mark.skipif(os.environ.get("TRACEMESH_MYPYC") != "1",
                    reason="the build was not required to compile (TRACEMESH_MYPYC=1, as .ci/run sets it)")
def test_this_run_uses_the_build_it_asked_for() -> None:
    """CI: `make test` on the compiled build, `make test-pure` on pure Python, never the one for the other, for the
    sidecar's modules and the collector's alike."""
    want_compiled = os.environ.get(PURE_PYTHON_ENV) != "1"
    assert tracemesh_sidecar.BUILD.compiled is want_compiled, tracemesh_sidecar.BUILD.describe()
    for module in (exchange, store):
        loaded_from = (module.__spec__.origin if module.__spec__ else "") or ""
        assert loaded_from.endswith(SUFFIX) is want_compiled, loaded_from
