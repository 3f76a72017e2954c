"""What benchmarks share: processes they start and measure (free ports, CPU time and peak RSS from
/proc), and percentiles of what they measured."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

_CPUCLOCK_SCHED = 2


def save_results(name: str, data: object) -> Path:
    """Write a benchmark's figures to bench/results/NAME.json, where they are kept with the code."""
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty sample."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f} s")


def process_tree(pid: int) -> list[int]:
    """The pid and its descendants (nginx's workers, for instance)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pids: Sequence[int]) -> float:
    """The processes' CPU time (user and kernel, every thread's, exited threads' too), to the nanosecond.

    Read from each process's CPU-time clock (Linux's clock id for a pid, as glibc's clock_getcpuclockid makes it)
    rather than /proc/PID/stat's utime and stime, which count in clock ticks (10 ms here): at 1000 requests/s a
    5 s segment gives nginx ~160 ms of CPU, so a tick was a 6% step in the figure a ratio is taken against."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):  # gone since it was listed
            total += time.clock_gettime_ns(_process_cpu_clock(pid))
    return total / 1e9


def _process_cpu_clock(pid: int) -> int:
    """Linux's CPU-time clock of a whole process (include/linux/posix-timers.h: MAKE_PROCESS_CPUCLOCK(pid,
    CPUCLOCK_SCHED)): the time its threads ran, as the scheduler counts it."""
    return ((~pid) << 3) | _CPUCLOCK_SCHED


async def settled(pid: int, deadline: float, quiet_s: float = 0.5) -> bool:
    """Until the process has used no CPU for `quiet_s` (its backlog is done); False if the deadline came first."""
    used = cpu_seconds([pid])
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet_s)
        now = cpu_seconds([pid])
        if now - used < 0.01:
            return True
        used = now
    return False


def peak_rss_mb(pids: Sequence[int]) -> float:
    total_kb = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


@dataclass
class Measured:
    """A process whose CPU time and peak memory a benchmark reports."""

    name: str
    process: subprocess.Popen[bytes]

    def pids(self) -> list[int]:
        return process_tree(self.process.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pids())

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.pids())


@contextlib.contextmanager
def started(name: str, argv: Sequence[str], port: int, env: dict[str, str] | None = None,
            start_timeout_s: float = 15.0) -> Iterator[Measured]:
    process = subprocess.Popen(list(argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        try:
            wait_for_port(port, start_timeout_s)
        except RuntimeError:
            process.kill()
            _, stderr = process.communicate(timeout=5)
            raise RuntimeError(f"{name} did not start: {stderr.decode(errors='replace')[-2000:]}") from None
        yield Measured(name, process)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
