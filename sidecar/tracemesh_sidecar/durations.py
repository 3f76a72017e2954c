"""Duration text in Go's `time.ParseDuration` syntax plus `d` for days: `250ms`, `1.5s`, `1h30m`, `2d`.

One parser for every duration a user writes: proxy config and MeshConfig fields, the collector's
query parameters (Jaeger's API takes Go durations) and the CLI's options. Decimal arithmetic so
that `0.1s` is exactly 100000 µs and a config value dumped and read back is the same float.
"""

from __future__ import annotations

import re
from decimal import Decimal

_UNIT_US = {"ns": Decimal("0.001"), "us": Decimal(1), "µs": Decimal(1), "μs": Decimal(1), "ms": Decimal(1_000),
            "s": Decimal(1_000_000), "m": Decimal(60_000_000), "h": Decimal(3_600_000_000),
            "d": Decimal(86_400_000_000)}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")
UNITS_HELP = "a number and a unit (ns, us, ms, s, m, h, d), e.g. 250ms, 1.5s, 1h30m"


def _microseconds(text: str) -> Decimal:
    position, total = 0, Decimal(0)
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += Decimal(match.group(1)) * _UNIT_US[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"{text!r} is not a duration: expected {UNITS_HELP}")
    return total


def parse_duration_us(text: str) -> int:
    """Whole microseconds in `text` (half a microsecond rounds to even); ValueError when malformed."""
    return int(_microseconds(text).to_integral_value())


def parse_duration_s(text: str) -> float:
    """Seconds in `text`; ValueError when malformed."""
    return float(_microseconds(text) / 1_000_000)
