"""Fixtures for the pods-as-network-namespaces tests: skip with the reason where the machine
cannot run them; otherwise a fresh cluster per test module, torn down even when a test fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

# The Bookinfo assertions shared with tests/kind.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e_common"))
from e2e_summary import pytest_terminal_summary, record, summary  # noqa: F401 (pytest finds them here)
from netns_cluster import PREFIX, Cluster, delete_netns, remove_leftovers
from netns_mesh import Mesh
from netns_pods import Kubelet

REQUIRED_TOOLS = {"ip": "iproute2", "iptables": "iptables", "iptables-restore": "iptables",
                  "iptables-save": "iptables", "setpriv": "util-linux", "sysctl": "procps"}


def netns_unavailable() -> str | None:
    """Why this machine cannot run the netns tests, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (ip netns, iptables); run as root, e.g. in CI via .ci/run"
    missing = sorted({package for tool, package in REQUIRED_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        return f"missing tools; apt-get install {' '.join(missing)}"
    # The sidecar runs as UID 1337 and the apps as other non-root users, from this checkout.
    readable = subprocess.run(["setpriv", "--reuid=1337", "--regid=1337", "--clear-groups", "--", sys.executable,
                               "-c", "import tracemesh_sidecar, tracemesh_bookinfo"], capture_output=True, check=False)
    if readable.returncode != 0:
        return (f"UID 1337 cannot run {sys.executable} from this checkout; make every directory above it "
                "world-searchable (chmod o+x)")
    probe = f"{PREFIX}{os.getpid()}-probe"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    delete_netns(probe)
    if done.returncode != 0:
        return f"cannot create network namespaces here ({done.stderr.strip()})"
    return None


_UNAVAILABLE = netns_unavailable()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("netns") is not None and _UNAVAILABLE:
            item.add_marker(pytest.mark.skip(reason=f"netns e2e: {_UNAVAILABLE}"))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    removed = remove_leftovers()
    if removed:
        record(f"removed {len(removed)} namespaces left by an earlier run: {', '.join(removed)}")
    built = Cluster()
    try:
        built.up()
        yield built
    finally:
        built.down()


@pytest.fixture(scope="module")
def kubelet(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubelet]:
    log_dir = tmp_path_factory.mktemp("pod-logs")
    running = Kubelet(cluster, Path(log_dir))
    try:
        yield running
    finally:
        running.stop_all()


@pytest_asyncio.fixture(loop_scope="module")
async def zipkin(mesh: Mesh) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """The collector's Zipkin API through a port-forward to its Service, as `tracemesh dashboard zipkin` gives
    it; `mesh` is the test module's own."""
    async with mesh.forward("zipkin") as forward, aiohttp.ClientSession() as session:
        yield session, forward.url
