"""Fixtures for the robustness tests: a strict counting origin, and one proxy process shared by the session."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# The proxy tests' harness (configs, in-process sidecars, raw origins) is shared, not copied.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "proxy"))
# bench/ (not installed), for its process probes; appended, so that the tree's `operator/` shadows nothing.
sys.path.append(str(Path(__file__).resolve().parents[2]))

from robust_harness import CountingOrigin, ProxyProcess, ThreadedOrigin, proxy_process


@pytest.fixture
async def counting_origin() -> AsyncIterator[CountingOrigin]:
    async with CountingOrigin() as origin:
        yield origin


@pytest.fixture(scope="session")
def session_origin() -> Iterator[CountingOrigin]:
    with ThreadedOrigin(CountingOrigin()) as origin:
        yield origin


@pytest.fixture(scope="session")
def proxy(session_origin: CountingOrigin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """`tracemesh proxy` (uvloop, the production event loop) in front of the session origin."""
    with proxy_process(session_origin.port, tmp_path_factory.mktemp("proxy")) as process:
        yield process
