"""setup.py's `auto` mode: a compiler that fails leaves a pure-Python build (no manifest, no extension);
`TRACEMESH_MYPYC=1` lets it fail. Run on a one-file extension that does not compile, not on the sidecar."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from setuptools.errors import CompileError

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                reason="no C compiler on this machine to fail with")


@pytest.fixture()
def broken_build(build_command: Callable[[str, Path], object], tmp_path: Path) -> object:
    source = tmp_path / "broken.c"
    source.write_text("this is not C;\n")
    return build_command("broken", source)


def test_auto_builds_pure_python_when_the_compiler_fails(
        setup_module: ModuleType, broken_build: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRACEMESH_MYPYC", "auto")
    command = broken_build
    command.run()  # type: ignore[attr-defined]
    assert command.get_outputs() == []  # type: ignore[attr-defined]
    assert not (setup_module.PACKAGE / setup_module.MANIFEST).exists()
    assert "compiling failed" in capsys.readouterr().err
    assert not list((tmp_path / "lib").rglob("broken*"))


def test_compile_or_fail_lets_the_failure_stop_the_build(
        setup_module: ModuleType, broken_build: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEMESH_MYPYC", "1")
    command = broken_build
    with pytest.raises(CompileError):
        command.run()  # type: ignore[attr-defined]
    assert (setup_module.PACKAGE / setup_module.MANIFEST).exists()
