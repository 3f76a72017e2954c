"""What every trace-context header format shares: the decoded context and the id checks.

Received ids are validated here once, for every format alike: the right length, hex only,
not all zeros. A failed check raises MalformedHeader, which never leaves `context.extract`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from tracemesh_sidecar.native_dataclasses import rebuilt_from_fields
from tracemesh_sidecar.spans.ids import normalize_trace_id

# What _hex_case tells of an id; the checks run on every request that carries a context, which is why headers do
# not go through spans.ids.check_hex_id (built for decoders' field-path errors).
_NOT_HEX: Final = 0
_LOWER_HEX: Final = 1
_MIXED_HEX: Final = 2  # hex digits, some of them uppercase
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
    length = len(value)
    case = _hex_case(value) if length == 16 or length == 32 else _NOT_HEX
    if case == _NOT_HEX:
        raise MalformedHeader(f"trace id {value!r} is not 16 or 32 hex digits")
    value = normalize_trace_id(value.lower() if case == _MIXED_HEX else value)
    if value == _ZERO_ID:
        raise MalformedHeader("trace id is all zeros")
    return value


def span_id(value: str) -> str:
    """A received 64-bit span id, lowercased."""
    case = _hex_case(value) if len(value) == 16 else _NOT_HEX
    if case == _NOT_HEX:
        raise MalformedHeader(f"span id {value!r} is not 16 hex digits")
    if value == _ZERO_ID:
        raise MalformedHeader("span id is all zeros")
    return value.lower() if case == _MIXED_HEX else value


def _hex_case(value: str) -> int:
    """_NOT_HEX when a character of `value` is not an ASCII hex digit, else _LOWER_HEX or _MIXED_HEX.

    A compiled loop over the bytes of the id's latin-1 text (an index into bytes is a native read; one into a str
    makes a string per character): the regex fullmatch it replaces cost ~2.5k instructions an id, and lowering an
    id already lowercase ~300 (callgrind; two or three ids a request that carries a context)."""
    try:
        data = value.encode("latin-1")
    except UnicodeEncodeError:  # beyond latin-1: no hex digit
        return _NOT_HEX
    case = _LOWER_HEX
    for index in range(len(data)):
        code = data[index]
        if 48 <= code <= 57 or 97 <= code <= 102:  # 0-9, a-f
            continue
        if 65 <= code <= 70:  # A-F
            case = _MIXED_HEX
            continue
        return _NOT_HEX
    return case
