"""The kind end-to-end: runs against the cluster `make kind-up images kind-load deploy bookinfo`
built; skipped where kind or docker is not installed (like here, and on most laptops)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

# The Bookinfo assertions shared with tests/netns.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e_common"))
from e2e_summary import pytest_terminal_summary, summary  # noqa: F401 (pytest finds them here)

_MISSING = [tool for tool in ("kind", "docker", "kubectl") if shutil.which(tool) is None]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("kind") is not None and _MISSING:
            item.add_marker(pytest.mark.skip(reason=f"kind/docker not found ({', '.join(_MISSING)} missing)"))
