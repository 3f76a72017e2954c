"""Which build of the sidecar runs (tracemesh_sidecar/build.py): the mypyc-compiled request path, or pure
Python when asked, when a source changed since the build, or when extensions have no manifest."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import sys
from pathlib import Path

import pytest

import tracemesh_sidecar
from tracemesh_sidecar.build import MANIFEST, PURE_PYTHON_ENV, select
from tracemesh_sidecar.proxy import exchange

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


@pytest.fixture(autouse=True)
def own_meta_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))


def package(tmp_path: Path, *, compiled: dict[str, str], manifest: bool = True) -> Path:
    """A package directory with the given sources, each with a (fake) extension beside it."""
    for name, text in compiled.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.with_suffix(SUFFIX).write_bytes(b"\x7fELF")
    if manifest:
        hashes = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in compiled.items()}
        (tmp_path / MANIFEST).write_text(json.dumps(hashes))
    return tmp_path


def source_of(name: str) -> str | None:
    for finder in sys.meta_path:
        spec = finder.find_spec(name, None)
        if spec is not None:
            return spec.origin
    return None


def test_a_build_without_mypyc_runs_as_it_is() -> None:
    before = list(sys.meta_path)
    build = select(Path("/nonexistent"), {})
    assert (build.compiled, build.why) == (False, "built without mypyc")
    assert sys.meta_path == before


def test_a_complete_compiled_build_runs_compiled(tmp_path: Path) -> None:
    before = list(sys.meta_path)
    build = select(package(tmp_path, compiled={"proxy/exchange.py": "x = 1\n", "stats.py": "y = 2\n"}), {})
    assert build.compiled and build.describe() == "compiled (mypyc): 2 modules of the request path"
    assert sys.meta_path == before  # the extensions are what Python imports first anyway


def test_tracemesh_pure_python_puts_every_compiled_modules_source_first(tmp_path: Path) -> None:
    root = package(tmp_path, compiled={"proxy/exchange.py": "x = 1\n", "stats.py": "y = 2\n"})
    build = select(root, {PURE_PYTHON_ENV: "1"})
    assert not build.compiled and build.why == "TRACEMESH_PURE_PYTHON=1"
    assert source_of("tracemesh_sidecar.proxy.exchange") == str(root / "proxy/exchange.py")
    assert source_of("tracemesh_sidecar.stats") == str(root / "stats.py")


def test_a_source_changed_since_the_build_runs_everything_pure_and_says_which(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = package(tmp_path, compiled={"proxy/exchange.py": "x = 1\n", "stats.py": "y = 2\n"})
    (root / "stats.py").write_text("y = 3\n")
    build = select(root, {})
    assert not build.compiled and "proxy/exchange.py" not in build.why and "stats.py" in build.why
    assert "running pure Python" in capsys.readouterr().err
    assert source_of("tracemesh_sidecar.proxy.exchange") == str(root / "proxy/exchange.py")  # not a mix


@pytest.mark.parametrize("case", ["no manifest", "a module without its extension"])
def test_extensions_without_a_complete_manifest_are_never_run(tmp_path: Path, case: str) -> None:
    root = package(tmp_path, compiled={"proxy/exchange.py": "x = 1\n"}, manifest=case != "no manifest")
    if case != "no manifest":
        (root / "stats.py").write_text("y = 2\n")
        hashes = json.loads((root / MANIFEST).read_text()) | {"stats.py": hashlib.sha256(b"y = 2\n").hexdigest()}
        (root / MANIFEST).write_text(json.dumps(hashes))
    build = select(root, {})
    assert not build.compiled
    assert source_of("tracemesh_sidecar.proxy.exchange") == str(root / "proxy/exchange.py")


@pytest.mark.skipif(os.environ.get("TRACEMESH_MYPYC") != "1",
                    reason="the build was not required to compile (TRACEMESH_MYPYC=1, as .ci/run sets it)")
def test_this_run_uses_the_build_it_asked_for() -> None:
    """CI: `make test` on the compiled build, `make test-pure` on pure Python, never the one for the other."""
    want_compiled = os.environ.get(PURE_PYTHON_ENV) != "1"
    assert tracemesh_sidecar.BUILD.compiled is want_compiled, tracemesh_sidecar.BUILD.describe()
    loaded_from = exchange.__spec__.origin if exchange.__spec__ else ""
    assert (loaded_from or "").endswith(SUFFIX) is want_compiled, loaded_from
