"""Query parameters read with errors that name the parameter and say what a good value looks like."""

from __future__ import annotations

from collections.abc import Mapping

from tracemesh_sidecar.durations import parse_duration_us

_HEX = frozenset("0123456789abcdef")


class ParameterError(ValueError):
    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        super().__init__(f"query parameter {name!r}: {problem}")


def text(query: Mapping[str, str], name: str) -> str | None:
    return query.get(name) or None


def required_text(query: Mapping[str, str], name: str, hint: str) -> str:
    value = query.get(name)
    if not value:
        raise ParameterError(name, f"is required: {hint}")
    return value


def integer(query: Mapping[str, str], name: str, *, positive: bool = False, what: str = "") -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < (1 if positive else 0):
        bound = "a positive" if positive else "a non-negative"
        raise ParameterError(name, f"must be {bound} integer{' of ' + what if what else ''}, got {raw!r}")
    return value


def duration_us(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        return parse_duration_us(raw)
    except ValueError as error:
        raise ParameterError(name, str(error)) from None


def trace_id(raw: str, name: str = "traceId") -> str:
    """A trace id as the store keys it: 1-32 hex characters, left-padded to 16 or 32 (Zipkin's normalization)."""
    lowered = raw.lower()
    if not 0 < len(lowered) <= 32 or not _HEX.issuperset(lowered):
        raise ParameterError(name, f"must be 16 or 32 hex characters, got {raw!r}")
    return lowered.rjust(16 if len(lowered) <= 16 else 32, "0")
