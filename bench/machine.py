"""Which machine a benchmark ran on: the same build's ratio to nginx was 3.2-3.6x on one VM and 1.8-2.0x on another.

Two VMs of this workplace gave the compiled sidecar 57-70 and 27 ms of CPU per 1000 requests saturated, against
nginx's 18-20 and 14 in the same runs (README.md, "Benchmarks"): a ratio depends on the machine as well as on the
code. So the report names the processor, its cache, the CPUs this process may use, the kernel, and how loaded the
machine was when the run began.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

_CPUINFO = Path("/proc/cpuinfo")


def describe(cpuinfo: str, cpus: int, kernel: str, load_1min: float) -> str:
    """`AMD EPYC (cache 1024 KB), 2 CPUs, Linux 6.1.0, load 0.08 at start` from /proc/cpuinfo's text and the rest."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        name, colon, value = line.partition(":")
        if not colon:
            if fields:  # the first processor's block is enough: a VM's CPUs are alike
                break
            continue
        fields.setdefault(name.strip(), value.strip())
    processor = fields.get("model name") or fields.get("Processor") or fields.get("CPU part") or "unknown processor"
    cache = f" (cache {fields['cache size']})" if "cache size" in fields else ""
    return f"{processor}{cache}, {cpus} CPU{'s' if cpus != 1 else ''}, Linux {kernel}, load {load_1min:.2f} at start"


def this_machine() -> str:
    try:
        cpuinfo = _CPUINFO.read_text()
    except OSError:
        cpuinfo = ""
    return describe(cpuinfo, len(os.sched_getaffinity(0)), platform.release(), os.getloadavg()[0])
