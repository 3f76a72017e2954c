"""`python -m bench` (`make bench`): every benchmark in turn; `python -m bench NAME` for one."""

from __future__ import annotations

import importlib
import sys

import tracemesh_sidecar
from bench.interpreter import this_interpreter
from bench.machine import this_machine

BENCHMARKS = {
    "proxy": "bench.proxy",
    "http2": "bench.http2",
    "exporter_clients": "bench.exporter_clients",
    "control_plane": "bench.control_plane",
    "operator_memory": "bench.operator_memory",
    "collector": "bench.collector",
    "instructions": "bench.instructions",
}


def main(names: list[str]) -> int:
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    # A ratio to nginx moves between machines (bench/machine.py): the figures say which one they came from.
    print(f"machine: {this_machine()}", flush=True)
    # The sidecars, the collector and the operator under test run on this interpreter too (sys.executable).
    print(f"interpreter: {this_interpreter()}", flush=True)
    # ... and on this build of the sidecar (`python -m bench proxy` also runs a pure-Python pair beside it).
    print(f"sidecar build: {tracemesh_sidecar.BUILD.describe()}", flush=True)
    failures = 0
    for name in names or list(BENCHMARKS):
        print(f"\n=== {name} ===", flush=True)
        failures += int(importlib.import_module(BENCHMARKS[name]).main([]) != 0)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
