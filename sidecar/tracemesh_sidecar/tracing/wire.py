"""What every trace-context header format shares: the decoded context and the id checks.

Received ids are validated here once, for every format alike: the right length, hex only,
not all zeros. A failed check raises MalformedHeader, which never leaves `context.extract`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from tracemesh_sidecar.native_dataclasses import rebuilt_from_fields
from tracemesh_sidecar.spans.ids import normalize_trace_id

# Precompiled single-pass checks (length and alphabet at once): they run on every request, which is
# why headers do not go through spans.ids.check_hex_id (built for decoders' field-path errors).
_HEX_TRACE_ID: Final = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}")
_HEX_SPAN_ID: Final = re.compile(r"[0-9a-fA-F]{16}")
_ZERO_ID: Final = "0" * 16


class MalformedHeader(Exception):
    """A trace header that is present but unusable; the format is then treated as absent."""


# Built per request: its own `__init__`, which mypyc compiles (a NamedTuple's `__new__` and the `__init__` @dataclass
# generates stay interpreted Python: ~1.2k instructions a call), rebuilt from its fields for copy and pickle
# (native_dataclasses.py).
@dataclass(slots=True)
class TraceContext:
    """The context one request arrived with.

    `trace_id` and `span_id` are None together for a sampling-only header (`x-b3-sampled: 1`,
    `b3: d`); `sampled` is None when no format carried a decision.
    """

    trace_id: str | None
    span_id: str | None
    sampled: bool | None
    debug: bool = False
    tracestate: str | None = None

    def __init__(self, trace_id: str | None, span_id: str | None, sampled: bool | None, debug: bool = False,
                 tracestate: str | None = None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self.debug = debug
        self.tracestate = tracestate

    def __reduce__(self) -> tuple[type[Any], tuple[object, ...]]:
        return rebuilt_from_fields(self)


def trace_id(value: str) -> str:
    """A received 64- or 128-bit trace id, lowercased; 128 bits with a zero high half read as 64 bits."""
    if _HEX_TRACE_ID.fullmatch(value) is None:
        raise MalformedHeader(f"trace id {value!r} is not 16 or 32 hex digits")
    value = normalize_trace_id(value.lower())
    if value == _ZERO_ID:
        raise MalformedHeader("trace id is all zeros")
    return value


def span_id(value: str) -> str:
    """A received 64-bit span id, lowercased."""
    if _HEX_SPAN_ID.fullmatch(value) is None:
        raise MalformedHeader(f"span id {value!r} is not 16 hex digits")
    if value == _ZERO_ID:
        raise MalformedHeader("span id is all zeros")
    return value.lower()
