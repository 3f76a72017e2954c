"""The real control plane (kopf, the unmodified handlers) against kmock's Kubernetes emulator."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import kmock
import pytest

from tracemesh_operator.control_plane import ControlPlane, Options
from tracemesh_operator.kmock_cluster import operator_ready, write_kubeconfig


@pytest.fixture
async def control_plane(kmock: kmock.KubernetesEmulator, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ControlPlane]:
    """The operator as `tracemesh operator` runs it (ephemeral ports), logged in through a kubeconfig.

    In a thread with its own event loop, as in its own process: when kopf stops, it cancels
    every task its loop started after it, which must not include the test's. Its start and stop are
    awaited off the test's loop, because the emulator answers on that loop: a blocking wait there left
    the operator's in-flight API calls unanswered while it stopped (kopf's own calls time out after
    5 minutes), and a loaded CI machine saw the operator outlive the 45 s join.
    """
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url))))
    with operator_ready(kmock):
        plane = ControlPlane(Options(host="127.0.0.1", discovery_port=0, webhook_port=0, liveness=None,
                                     work_dir=tmp_path / "webhook"))
        ready, stop = threading.Event(), threading.Event()
        thread = threading.Thread(target=asyncio.run, args=(plane.run(stop_flag=stop, ready_flag=ready),),
                                  name="operator")
        thread.start()
        try:
            assert await asyncio.to_thread(ready.wait, 10), "the operator did not start within 10s"
            yield plane
        finally:
            stop.set()
            # kopf's shutdown waits out its queues (settings.queueing.exit_timeout, 2 s), then cancels handlers,
            # whose in-flight API calls the emulator keeps answering meanwhile: well inside 45 s even when loaded.
            await asyncio.to_thread(thread.join, 45)
            assert not thread.is_alive(), "the operator did not stop within 45s"
