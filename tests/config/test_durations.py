"""The one duration parser (Go syntax plus days) behind config fields, collector queries and CLI options."""

from __future__ import annotations

import pytest

from tracemesh_sidecar.durations import parse_duration_s, parse_duration_us


@pytest.mark.parametrize(("text", "microseconds"), [
    ("250ms", 250_000), ("1.5s", 1_500_000), ("1h30m", 5_400_000_000), ("2d", 172_800_000_000),
    ("500us", 500), ("500µs", 500), ("1500ns", 2), (".5s", 500_000),
])
def test_durations(text: str, microseconds: int) -> None:
    assert parse_duration_us(text) == microseconds


@pytest.mark.parametrize("text", ["", "5", "1 h", "h", "1x", "1h-5m", "-1s"])
def test_malformed_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration: expected a number and a unit"):
        parse_duration_us(text)


def test_seconds_are_exact_decimals() -> None:
    # Config values are dumped and read back: 0.1 s must read as the float 0.1, not 0.1000000000000000055...
    assert parse_duration_s("0.1s") == 0.1
    assert parse_duration_s("50us") == 0.00005
    assert parse_duration_s("1m30s") == 90.0
