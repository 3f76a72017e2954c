"""What every trace-context header format shares: the decoded context and the id checks.

Received ids are validated here once, for every format alike: the right length, hex only,
not all zeros. A failed check raises MalformedHeader, which never leaves `context.extract`.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Precompiled single-pass checks (length and alphabet at once): they run on every request.
_HEX_TRACE_ID = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}")
_HEX_SPAN_ID = re.compile(r"[0-9a-fA-F]{16}")
_ZERO_HIGH_HALF = "0" * 16


class MalformedHeader(Exception):
    """A trace header that is present but unusable; the format is then treated as absent."""


class TraceContext(NamedTuple):
    """The context one request arrived with (a NamedTuple: built per request, cheaper than a dataclass).

    `trace_id` and `span_id` are None together for a sampling-only header (`x-b3-sampled: 1`,
    `b3: d`); `sampled` is None when no format carried a decision.
    """

    trace_id: str | None
    span_id: str | None
    sampled: bool | None
    debug: bool = False
    tracestate: str | None = None


def trace_id(value: str) -> str:
    """A received 64- or 128-bit trace id, lowercased.

    A 128-bit id whose high half is zero is the 64-bit id in its low half (Zipkin's rule, and how
    W3C carries a 64-bit id), so it is returned as 16 characters: every format then names the same
    trace with the same string.
    """
    if _HEX_TRACE_ID.fullmatch(value) is None:
        raise MalformedHeader(f"trace id {value!r} is not 16 or 32 hex digits")
    value = value.lower()
    if len(value) == 32 and value.startswith(_ZERO_HIGH_HALF):
        value = value[16:]
    if value == _ZERO_HIGH_HALF:
        raise MalformedHeader("trace id is all zeros")
    return value


def span_id(value: str) -> str:
    """A received 64-bit span id, lowercased."""
    if _HEX_SPAN_ID.fullmatch(value) is None:
        raise MalformedHeader(f"span id {value!r} is not 16 hex digits")
    if value == _ZERO_HIGH_HALF:
        raise MalformedHeader("span id is all zeros")
    return value.lower()
