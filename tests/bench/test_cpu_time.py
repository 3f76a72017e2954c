"""bench/processes.py's cpu_seconds: the CPU time every ratio in `make bench` is taken from."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.processes import cpu_seconds

# A child that burns CPU in a thread that then exits, and waits to be measured.
_BURN_IN_A_THREAD = """
import threading, time, sys
def burn():
    end = time.thread_time() + 0.3
    while time.thread_time() < end:
        pass
worker = threading.Thread(target=burn)
worker.start()
worker.join()
print("done", flush=True)
sys.stdin.read()
"""


def test_it_is_the_process_cpu_clock_to_the_nanosecond() -> None:
    """Between two readings of this process's own CPU clock: the same clock, not /proc's 10 ms ticks."""
    for _ in range(5):
        before = time.process_time()
        measured = cpu_seconds([os.getpid()])
        after = time.process_time()
        assert before <= measured <= after


def test_a_thread_that_has_exited_still_counts() -> None:
    child = subprocess.Popen([sys.executable, "-c", _BURN_IN_A_THREAD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "done\n"
        assert cpu_seconds([child.pid]) >= 0.3
    finally:
        child.kill()
        child.wait()


def test_a_process_gone_counts_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names nothing
    assert cpu_seconds([child.pid]) == 0.0
