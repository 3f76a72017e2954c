"""bench/machine.py: the machine line `make bench` prints before its figures."""

from __future__ import annotations

from bench.machine import describe, this_machine

# Two processors' blocks as an x86_64 VM's /proc/cpuinfo shows them (abridged).
X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
cache size\t: 1024 KB

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
cache size\t: 55296 KB
"""
# An arm64 kernel's: no model name, no cache size.
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 243.75
CPU implementer\t: 0x41
CPU part\t: 0xd0c
"""


def test_the_first_processor_is_named_with_its_cache() -> None:
    assert describe(X86_CPUINFO, 2, "6.1.0-18-amd64", 0.084) == \
        "AMD EPYC (cache 1024 KB), 2 CPUs, Linux 6.1.0-18-amd64, load 0.08 at start"


def test_a_processor_without_a_model_name_is_named_by_its_part() -> None:
    assert describe(ARM_CPUINFO, 1, "6.8.0", 1.5) == "0xd0c, 1 CPU, Linux 6.8.0, load 1.50 at start"


def test_no_cpuinfo_says_so() -> None:
    assert describe("", 4, "6.8.0", 0.0).startswith("unknown processor, 4 CPUs")


def test_this_machine_reads_the_running_one() -> None:
    assert ", Linux " in this_machine()
