"""`status.conditions` of Telemetry and MeshConfig: a `Ready` condition saying, in words, what is wrong."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

READY = "Ready"


def ready_condition(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The object's `Ready` entry of `status.conditions`, as written."""
    status = body.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    for condition in conditions if isinstance(conditions, list) else ():
        if isinstance(condition, Mapping) and condition.get("type") == READY:
            return condition
    return None


@dataclass(frozen=True, slots=True)
class Condition:
    ready: bool
    reason: str
    message: str

    @classmethod
    def observed(cls, body: Mapping[str, Any]) -> Condition | None:
        condition = ready_condition(body)
        if condition is None:
            return None
        return cls(condition.get("status") == "True", str(condition.get("reason") or ""),
                   str(condition.get("message") or ""))

    def to_status(self, body: Mapping[str, Any], now: str) -> dict[str, Any]:
        """The `status` patch; lastTransitionTime moves only when the True/False value does."""
        previous = ready_condition(body)
        unchanged = previous is not None and (previous.get("status") == "True") == self.ready
        condition: dict[str, Any] = {
            "type": READY,
            "status": "True" if self.ready else "False",
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": str(previous.get("lastTransitionTime") or now) if previous and unchanged else now,
        }
        metadata = body.get("metadata")
        generation = metadata.get("generation") if isinstance(metadata, Mapping) else None
        if generation is not None:
            condition["observedGeneration"] = generation
        # The whole list goes in the merge patch: keep the conditions other controllers wrote.
        status = body.get("status")
        existing = status.get("conditions") if isinstance(status, Mapping) else None
        others = [dict(entry) for entry in (existing if isinstance(existing, list) else ())
                  if isinstance(entry, Mapping) and entry.get("type") != READY]
        return {"conditions": [*others, condition]}
