"""The demo's child processes: started in their own process groups, stopped together, never orphaned.

Each child gets its own process group, so the terminal's Ctrl-C reaches only the demo, which then
stops every child in order (SIGTERM to the group, SIGKILL after a grace period). Each child also
asks the kernel for SIGTERM should the demo die without cleaning up (PR_SET_PDEATHSIG), so even
`kill -9` of the demo leaves no orphans. util-linux's `setpriv --pdeathsig` asks it, just before it
execs the child's program, rather than Python code between fork and exec: a `preexec_fn` makes
subprocess fork() where it would vfork(), and the forked copy of a process running grpcio's threads
can abort in grpc's fork handlers before it execs (seen in CI: status -6, ev_epoll1_linux.cc).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LOG_TAIL_LINES = 15


class ChildFailed(RuntimeError):
    """A child exited or never started listening; the message carries the end of its log."""


def _dying_with_parent(argv: Sequence[str]) -> list[str]:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise ChildFailed("the demo needs util-linux's setpriv (Debian, Ubuntu: the util-linux package), which has "
                          "each child ask for SIGTERM when the demo dies")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(f"    {line}" for line in text.splitlines()[-lines:])

    def failure(self, what: str) -> ChildFailed:
        tail = self.log_tail()
        return ChildFailed(f"{self.name} {what} (log: {self.log_path})" + (f"\n{tail}" if tail else ""))


class Supervisor:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Child:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(_dying_with_parent(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, process_group=0)
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    async def wait_listening(self, child: Child, ports: Sequence[int], timeout_s: float) -> None:
        """Until every port accepts connections; raises ChildFailed if the child exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        pending = list(ports)
        while pending:
            if child.process.poll() is not None:
                raise child.failure(f"exited with status {child.process.returncode} before listening")
            if time.monotonic() > deadline:
                raise child.failure(f"did not listen on port(s) {', '.join(map(str, pending))} "
                                    f"within {timeout_s:g} s")
            if await _accepts(pending[0]):
                pending.pop(0)
            else:
                await asyncio.sleep(0.05)

    def check_alive(self) -> None:
        for child in self.children:
            if child.process.poll() is not None:
                raise child.failure(f"exited with status {child.process.returncode}")

    def stop_all(self, grace_s: float = 3.0) -> None:
        """SIGTERM every child's group, then SIGKILL what is left after `grace_s`; waits for all."""
        for child in self.children:
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child, signal.SIGKILL)
                child.process.wait()
        self.children.clear()


def _signal_group(child: Child, signum: int) -> None:
    if child.process.poll() is not None:
        return  # reaped already: its group id may belong to someone else by now
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.process.pid, signum)


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout=0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
