"""When to retry an export request and how long to wait first (pure: no I/O, no clock)."""

from __future__ import annotations

import random

from tracemesh_sidecar.backoff import jittered_backoff

BASE_DELAY_S = 0.2
MAX_DELAY_S = 5.0
_RANDOM = random.Random()


def is_retryable_status(status: int) -> bool:
    """429 and 5xx may succeed later; any other 4xx will fail the same way again."""
    return status == 429 or status >= 500


def backoff_delay(attempt: int, retry_after_s: float | None = None,
                  rand: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (0 = the first retry), jittered exponential.

    A collector's Retry-After is honoured up to MAX_DELAY_S: waiting longer would only let the
    queue overflow.
    """
    if retry_after_s is not None:
        return min(max(retry_after_s, 0.0), MAX_DELAY_S)
    return jittered_backoff(attempt, BASE_DELAY_S, MAX_DELAY_S, (rand or _RANDOM).random)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form is ignored (a collector on a skewed clock would mislead)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
