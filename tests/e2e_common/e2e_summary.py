"""What the end-to-end tests checked, printed at the end of the run (pytest hides passing
tests' output; the counts of pods, spans and traces are worth seeing every time).

Both e2e conftests import `summary` and `pytest_terminal_summary` from here.
"""

from __future__ import annotations

import pytest

_LINES: list[str] = []


def record(line: str) -> None:
    _LINES.append(line)


@pytest.fixture(scope="session")
def summary() -> list[str]:
    """Tests append one line each saying how many pods, spans and traces they checked."""
    return _LINES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LINES:
        terminalreporter.section("end-to-end: what was checked")
        for line in _LINES:
            terminalreporter.write_line(line)
        _LINES.clear()  # both conftests register this hook: print once
