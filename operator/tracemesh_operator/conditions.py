"""`status.conditions` of Telemetry and MeshConfig, each saying in words what is wrong.

Two conditions, because "in force" and "does everything it says" are different facts:
`Ready` - the resource is in force (False: rejected, its last good version or nothing applies);
`Honoured` - every field it sets is acted on (False: some are accepted, as Istio accepts them, but not
acted on, or acted on with a caveat; the message names each field and what to do).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

READY = "Ready"
HONOURED = "Honoured"
TYPES = (READY, HONOURED)


def _conditions(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = body.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    return [entry for entry in (conditions if isinstance(conditions, list) else ()) if isinstance(entry, Mapping)]


def written_condition(body: Mapping[str, Any], kind: str = READY) -> Mapping[str, Any] | None:
    """The object's `kind` entry of `status.conditions`, as written."""
    return next((entry for entry in _conditions(body) if entry.get("type") == kind), None)


@dataclass(frozen=True, slots=True)
class Condition:
    ready: bool  # the condition's status: True or False
    reason: str
    message: str
    type: str = READY

    @classmethod
    def observed(cls, body: Mapping[str, Any], kind: str = READY) -> Condition | None:
        condition = written_condition(body, kind)
        if condition is None:
            return None
        return cls(condition.get("status") == "True", str(condition.get("reason") or ""),
                   str(condition.get("message") or ""), kind)

    def entry(self, body: Mapping[str, Any], now: str) -> dict[str, Any]:
        """This condition's `status.conditions` entry; lastTransitionTime moves only when True/False does."""
        previous = written_condition(body, self.type)
        unchanged = previous is not None and (previous.get("status") == "True") == self.ready
        condition: dict[str, Any] = {
            "type": self.type,
            "status": "True" if self.ready else "False",
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": str(previous.get("lastTransitionTime") or now) if previous and unchanged else now,
        }
        metadata = body.get("metadata")
        generation = metadata.get("generation") if isinstance(metadata, Mapping) else None
        if generation is not None:
            condition["observedGeneration"] = generation
        return condition


def status_patch(body: Mapping[str, Any], conditions: Sequence[Condition], now: str) -> dict[str, Any]:
    """The `status` patch writing `conditions`.

    The whole list goes in the merge patch: keep the conditions other controllers wrote.
    """
    written = {condition.type for condition in conditions}
    others = [dict(entry) for entry in _conditions(body) if entry.get("type") not in written]
    return {"conditions": [*others, *(condition.entry(body, now) for condition in conditions)]}
