"""Log lines about a failing collector: each distinct error once per interval, not once per batch."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

REPEAT_INTERVAL_S = 60.0
MAX_REMEMBERED = 64


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval_s: float = REPEAT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last_logged: dict[str, float] = {}

    def warning(self, error: str, message: str) -> bool:
        """Logs `message` unless `error` was logged less than the interval ago; says whether it logged."""
        now = self._clock()
        last = self._last_logged.get(error)
        if last is not None and now - last < self._interval_s:
            return False
        if len(self._last_logged) >= MAX_REMEMBERED:
            self._last_logged.clear()  # a collector inventing endless distinct errors must not grow memory
        self._last_logged[error] = now
        self._logger.warning("%s", message)
        return True
