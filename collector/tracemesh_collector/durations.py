"""Durations written the way Jaeger's API and the CLI take them: `1h`, `15m`, `1.5s`, `250ms`, `1h30m`."""

from __future__ import annotations

import re

_UNIT_US = {"ns": 0.001, "us": 1, "µs": 1, "μs": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000,
            "h": 3_600_000_000, "d": 86_400_000_000}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")
UNITS_HELP = "a number and a unit (ns, us, ms, s, m, h, d), e.g. 250ms, 1.5s, 1h30m"


def parse_duration_us(text: str) -> int:
    """Microseconds in `text` (Go's time.ParseDuration syntax plus `d` for days); ValueError when malformed."""
    position, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_US[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"{text!r} is not a duration: expected {UNITS_HELP}")
    return round(total)
