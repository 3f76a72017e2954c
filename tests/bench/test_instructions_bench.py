"""bench/instructions.py reads the count from the profile callgrind dumps (callgrind's format: `totals:` after the
header; the `summary:` line above it is 0 for a dump made with instrumentation switched on mid-run)."""

from __future__ import annotations

import pytest

from bench.instructions import Counted, callgrind_totals, succeeded_2xx

# The head and tail of a dump made by `callgrind_control -d` (callgrind 3.19), cost lines elided.
_DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 5423
cmd:  /work/main/.venv/bin/python -m tracemesh_cli.main proxy --config /tmp/sidecar-client.json
part: 1

desc: Timerange: Basic block 0 - 173014869
desc: Trigger: dump

positions: line
events: Ir
summary: 0

fn=(6378) __Pyx_CyFunction_Vectorcall_FASTCALL_KEYWORDS
8711 990
totals: 431142121
"""


def test_the_count_is_the_totals_line_not_the_summary() -> None:
    assert callgrind_totals(_DUMP) == 431_142_121
    assert Counted("compiled", 2048, callgrind_totals(_DUMP)).per_request == 210_518


def test_a_profile_without_totals_is_refused() -> None:
    with pytest.raises(ValueError, match="totals"):
        callgrind_totals(_DUMP.replace("totals: 431142121\n", ""))


def test_the_load_counts_only_2xx_answers() -> None:
    """h2load's summary as it prints it (nghttp2 1.52.0): every request done is not every request answered 2xx."""
    answered = ("requests: 2048 total, 2048 started, 2048 done, 2048 succeeded, 0 failed, 0 errored, 0 timeout\n"
                "status codes: 2048 2xx, 0 3xx, 0 4xx, 0 5xx\n")
    refused = answered.replace("2048 2xx, 0 3xx, 0 4xx, 0 5xx", "0 2xx, 0 3xx, 0 4xx, 2048 5xx")
    assert succeeded_2xx(answered) == 2048
    assert succeeded_2xx(refused) == 0
    assert succeeded_2xx("") == 0
