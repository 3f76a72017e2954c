"""The images' build stage, rehearsed without Docker: exactly the files the Dockerfiles COPY
build a tracemesh wheel with every package, the console script and every subcommand's module."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tracemesh_cli.main import COMMANDS

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("tracemesh_sidecar", "tracemesh_operator", "tracemesh_collector", "tracemesh_cli", "tracemesh_bookinfo")


def copied_sources(dockerfile: Path) -> list[str]:
    """The sources of the build stage's COPY instructions (those not --from another stage)."""
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(word.startswith("--from") for word in words):
            sources += words[1:-1]
    return sources


@pytest.mark.parametrize("image", ["proxy", "operator"])
def test_the_copied_files_build_a_complete_wheel(image: str, tmp_path: Path) -> None:
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools not installed in this environment")
    context = tmp_path / "context"
    for source in copied_sources(REPO / "images" / image / "Dockerfile"):
        target = context / source
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / source, target)
    # Pure Python: the files and the packaging are rehearsed here; `make images-smoke` compiles the proxy's.
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                           "--wheel-dir", str(tmp_path / "wheels"), str(context)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "TRACEMESH_MYPYC": "0"})
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "wheels").glob("tracemesh-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names, f"{package} is missing from the image's wheel"
    for module, _ in COMMANDS.values():
        path = module.replace(".", "/")
        assert f"{path}.py" in names or f"{path}/__init__.py" in names, f"`tracemesh` needs {module}"
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "tracemesh = tracemesh_cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_nothing_the_images_copy_is_docker_ignored() -> None:
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for image in ("proxy", "operator"):
        for source in copied_sources(REPO / "images" / image / "Dockerfile"):
            assert not any(Path(source).match(pattern.strip("/")) for pattern in ignored), (image, source)
