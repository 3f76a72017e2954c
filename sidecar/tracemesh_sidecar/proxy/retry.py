"""When a route's retry policy retries, as Envoy's RetryStateImpl decides (source/common/router/retry_state_impl.cc).

Pure decisions; the exchange does the retrying. A failure before any response (connect failure,
reset, per-try timeout) is retried under `5xx`, `gateway-error` or `reset`, and a connect failure
also under `connect-failure` (wouldRetryFromReset). A response is retried by its status (`5xx`,
`gateway-error`: 502-504, `retriable-4xx`: 409, `retriable-status-codes`: the listed codes) or by
its `grpc-status` (`cancelled` 1, `deadline-exceeded` 4, `resource-exhausted` 8, `internal` 13,
`unavailable` 14). Backoff: Envoy's default, fully jittered exponential from 25 ms, capped at 250 ms.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final, Literal

from tracemesh_sidecar.config.routes import RetryPolicy

Failure = Literal["connect-failure", "reset", "per-try-timeout"]
_RESET_CONDITIONS: Final = frozenset({"5xx", "gateway-error", "reset"})
_GRPC_CONDITIONS: Final = {"1": "cancelled", "4": "deadline-exceeded", "8": "resource-exhausted", "13": "internal",
                           "14": "unavailable"}
BASE_INTERVAL_S: Final = 0.025
MAX_INTERVAL_S: Final = 0.25


def retries_failure(policy: RetryPolicy, failure: Failure) -> bool:
    conditions = policy.conditions
    if not conditions.isdisjoint(_RESET_CONDITIONS):
        return True
    return failure == "connect-failure" and "connect-failure" in conditions


def retries_response(policy: RetryPolicy, status: int, grpc_status: str | None) -> bool:
    conditions = policy.conditions
    if status >= 500 and "5xx" in conditions:
        return True
    if 502 <= status <= 504 and "gateway-error" in conditions:
        return True
    if status == 409 and "retriable-4xx" in conditions:
        return True
    if "retriable-status-codes" in conditions and status in policy.retriable_status_codes:
        return True
    condition = _GRPC_CONDITIONS.get(grpc_status.strip()) if grpc_status else None
    return condition is not None and condition in conditions


def backoff_s(retry: int, uniform: Callable[[float, float], float] = random.uniform) -> float:
    """The wait before retry number `retry` (1, 2, ...): random below base * 2^(retry-1), capped."""
    return uniform(0.0, min(BASE_INTERVAL_S * (2 ** (retry - 1)), MAX_INTERVAL_S))
