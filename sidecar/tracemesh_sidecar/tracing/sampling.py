"""The sampling decision for one hop."""

from __future__ import annotations

from collections.abc import Callable


def decide(upstream_decision: bool | None, debug: bool, percentage: float, rand: Callable[[], float]) -> bool:
    """Debug forces sampling; else an upstream decision is obeyed; else `percentage` (0-100) decides.

    `rand` returns a float in [0, 1), so 0 never samples and 100 always does.
    """
    if debug:
        return True
    if upstream_decision is not None:
        return upstream_decision
    return rand() * 100.0 < percentage
