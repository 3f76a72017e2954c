"""Retry delays shared by everything in the sidecar that reconnects: span export and config subscription."""

from __future__ import annotations

from collections.abc import Callable


def jittered_backoff(attempt: int, base_s: float, cap_s: float, rand: Callable[[], float]) -> float:
    """Seconds before retry number `attempt` (0 = the first retry): `base_s` doubling per attempt up to `cap_s`.

    "Equal jitter" (between half and all of the step, `rand` giving [0, 1)): the sidecars of a fleet
    that lost the same collector or operator do not all come back in lockstep, yet none retries
    sooner than half the step.
    """
    step = min(cap_s, base_s * 2.0 ** min(attempt, 32))
    return step / 2 + rand() * step / 2
