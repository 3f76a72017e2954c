"""The demo's process handling: taken ports are named, children stop together and never outlive the demo."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tracemesh_cli.demo.ports import PortError, check_free, pick_free
from tracemesh_cli.demo.processes import ChildFailed, Supervisor


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (dead, not yet reaped by its parent) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_taken_port_is_named_with_its_flag() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortError, match=rf"port {port} \(productpage\) on 127.0.0.1 is not available .* "
                                            r"pass --port with another port"):
            check_free({"--zipkin-port": (0, "the Zipkin API"), "--port": (port, "productpage")})
    check_free({"--port": (port, "productpage")})  # free again once released


def test_pick_free_gives_distinct_bindable_ports() -> None:
    ports = pick_free(20)
    assert len(set(ports)) == 20
    check_free({f"--p{index}": (port, "test") for index, port in enumerate(ports)})


def test_pick_free_skips_ports_promised_elsewhere() -> None:
    promised = set(pick_free(50))
    assert not promised & set(pick_free(50, exclude=promised))


PYTHON_SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
# Ignores SIGTERM and starts a grandchild in its own process group: only SIGKILL to the group ends both.
# The grandchild's pid goes to the file named by argv[1], not to the log: a forked child's log may open with
# lines the parent's libraries print after fork (grpcio's "E1201 ..." fork-handler warnings did, in CI).
STUBBORN_SCRIPT = textwrap.dedent("""
    import pathlib, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                              "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
    pathlib.Path(sys.argv[1] + ".tmp").write_text(str(child.pid))
    pathlib.Path(sys.argv[1] + ".tmp").rename(sys.argv[1])
    time.sleep(60)
""")


async def test_stop_all_terminates_then_kills_whole_groups(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    polite = supervisor.start("polite", PYTHON_SLEEPER, os.environ)
    pid_file = tmp_path / "grandchild.pid"
    stubborn = supervisor.start("stubborn", [sys.executable, "-c", STUBBORN_SCRIPT, str(pid_file)], os.environ)
    deadline = time.monotonic() + 10
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    started = time.monotonic()
    supervisor.stop_all(grace_s=0.5)
    assert time.monotonic() - started < 5
    assert polite.process.returncode == -signal.SIGTERM
    assert stubborn.process.returncode == -signal.SIGKILL
    assert wait_gone(grandchild)
    assert supervisor.children == []


async def test_a_child_that_exits_early_is_reported_with_its_log(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    failing = [sys.executable, "-c", "print('config rejected: bad field'); raise SystemExit(2)"]
    child = supervisor.start("broken", failing, os.environ)
    with pytest.raises(ChildFailed, match=r"broken exited with status 2 before listening .*\n.*config rejected"):
        await supervisor.wait_listening(child, pick_free(1), timeout_s=10)
    supervisor.stop_all()


def test_without_setpriv_no_child_starts_and_the_error_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    supervisor = Supervisor(tmp_path)
    with pytest.raises(ChildFailed, match="util-linux's setpriv"):
        supervisor.start("child", PYTHON_SLEEPER, os.environ)
    assert supervisor.children == []


async def test_a_child_that_never_listens_times_out(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    child = supervisor.start("quiet", PYTHON_SLEEPER, os.environ)
    try:
        with pytest.raises(ChildFailed, match=r"quiet did not listen on port\(s\) \d+ within 0.3 s"):
            await supervisor.wait_listening(child, pick_free(1), timeout_s=0.3)
    finally:
        supervisor.stop_all()


def test_children_die_with_a_killed_demo(tmp_path: Path) -> None:
    """Even `kill -9` of the demo leaves no orphans: each child has asked for SIGTERM when its parent dies."""
    script = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from tracemesh_cli.demo.processes import Supervisor
        supervisor = Supervisor(Path({str(tmp_path)!r}))
        child = supervisor.start("child", {PYTHON_SLEEPER!r}, os.environ)
        print(child.process.pid, flush=True)
        time.sleep(60)
    """)
    demo = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert demo.stdout is not None
        child_pid = int(demo.stdout.readline())
        assert alive(child_pid)
        demo.kill()
        demo.wait(timeout=10)
        assert wait_gone(child_pid)
    finally:
        if demo.poll() is None:
            demo.kill()
