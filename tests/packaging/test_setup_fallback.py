"""setup.py's `auto` mode: a compiler that fails leaves a pure-Python build (no manifest, no extension);
`TRACEMESH_MYPYC=1` lets it fail. Run on a one-file extension that does not compile, not on the sidecar."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest
from setuptools import Distribution, Extension
from setuptools.errors import CompileError

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                reason="no C compiler on this machine to fail with")


@pytest.fixture()
def setup_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("tracemesh_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # setup() runs only as __main__
    package = tmp_path / "package"
    package.mkdir()
    (package / module.MANIFEST).write_text("{}")
    monkeypatch.setattr(module, "PACKAGE", package)  # never the checkout's own manifest
    return module


def broken_build(module: ModuleType, tmp_path: Path) -> object:
    source = tmp_path / "broken.c"
    source.write_text("this is not C;\n")
    dist = Distribution({"name": "broken", "ext_modules": [Extension("broken", [str(source)])]})
    command = module.BuildExtOrPurePython(dist)
    command.build_lib = str(tmp_path / "lib")
    command.build_temp = str(tmp_path / "temp")
    command.ensure_finalized()
    return command


def test_auto_builds_pure_python_when_the_compiler_fails(
        setup_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRACEMESH_MYPYC", "auto")
    command = broken_build(setup_module, tmp_path)
    command.run()  # type: ignore[attr-defined]
    assert command.get_outputs() == []  # type: ignore[attr-defined]
    assert not (setup_module.PACKAGE / setup_module.MANIFEST).exists()
    assert "compiling failed" in capsys.readouterr().err
    assert not list((tmp_path / "lib").rglob("broken*"))


def test_compile_or_fail_lets_the_failure_stop_the_build(
        setup_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEMESH_MYPYC", "1")
    command = broken_build(setup_module, tmp_path)
    with pytest.raises(CompileError):
        command.run()  # type: ignore[attr-defined]
    assert (setup_module.PACKAGE / setup_module.MANIFEST).exists()
