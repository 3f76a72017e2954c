"""When is an installed object ready, and waiting until it is: what `tracemesh install` waits for.

As istioctl's operator/pkg/install/wait.go: a CRD is ready when Established, a Deployment when
its Available condition is True; and the MeshConfig when the operator has accepted it (Ready).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")
POLL_S = 0.25
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(h|m|s|ms)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class NotReady(Exception):
    """Not ready within the time given: the message names what and why."""


def condition(body: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    status = (body or {}).get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    for entry in conditions if isinstance(conditions, list) else ():
        if isinstance(entry, Mapping) and entry.get("type") == kind:
            return entry
    return None


def is_true(body: Mapping[str, Any] | None, kind: str) -> bool:
    return (condition(body, kind) or {}).get("status") == "True"


def observed_current(body: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    """The condition speaks of the object as it is now (not of a generation before this apply)."""
    generation = (body.get("metadata") or {}).get("generation")
    observed = entry.get("observedGeneration")
    return generation is None or observed is None or observed >= generation


def parse_duration(text: str) -> float:
    """Seconds, from a Go duration as istioctl takes it (`300s`, `5m`, `1m30s`) or a plain number of seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"{text!r} is not a duration; write e.g. 300s, 5m or 1m30s")
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


def wait_until(check: Callable[[], T | None], timeout_s: float, what: str,
               why_not: Callable[[], str] = lambda: "") -> T:
    """Polls `check` until it returns something other than None; NotReady after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            reason = why_not()
            raise NotReady(f"{what} not ready after {timeout_s:g}s" + (f": {reason}" if reason else ""))
        time.sleep(POLL_S)
