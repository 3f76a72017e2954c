"""setup.py loaded as a module (its setup() runs only as __main__), with its manifest kept out of the checkout,
and build_ext commands of it over one-file extensions: the build's choices tested without compiling the sidecar."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from setuptools import Distribution, Extension

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def setup_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("tracemesh_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    package = tmp_path / "package"
    package.mkdir()
    (package / module.MANIFEST).write_text("{}")
    monkeypatch.setattr(module, "PACKAGE", package)  # never the checkout's own manifest
    return module


@pytest.fixture()
def build_command(setup_module: ModuleType, tmp_path: Path) -> Callable[[str, Path], object]:
    """setup.py's build_ext over one extension, named and built from the C source given, into tmp_path/lib."""
    def command(name: str, source: Path) -> object:
        dist = Distribution({"name": name, "ext_modules": [Extension(name, [str(source)])]})
        built = setup_module.BuildExtOrPurePython(dist)
        built.build_lib = str(tmp_path / "lib")
        built.build_temp = str(tmp_path / "temp")
        built.ensure_finalized()
        return built
    return command
