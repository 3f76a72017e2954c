"""Span and trace ids between their text form (lowercase hex, as the Span model holds them) and bytes."""

from __future__ import annotations

from typing import Final

from tracemesh_sidecar.spans.errors import SpanDecodeError

_HEX_DIGITS: Final = "0123456789abcdef"
_ZERO_HIGH_HALF: Final = "0" * 16


def check_hex_id(value: object, field: str, lengths: tuple[int, ...], what: str) -> str:
    """`value` as a lowercase hex id of one of `lengths` characters; uppercase is accepted, as Zipkin does.

    An all-zero id is rejected: B3, W3C and OTLP all reserve it for "no id".
    """
    if value is None:
        raise SpanDecodeError(field, f"is required: {what}")
    if not isinstance(value, str):
        raise SpanDecodeError(field, f"must be {what}, got {_show(value)}")
    lowered = value.lower()
    if len(lowered) not in lengths or not is_lowercase_hex(lowered):
        raise SpanDecodeError(field, f"must be {what}, got {_show(value)}")
    if lowered.count("0") == len(lowered):
        raise SpanDecodeError(field, f"must not be all zeros, got {value!r}")
    return lowered


def is_lowercase_hex(text: str) -> bool:
    """Whether every character of `text` is a lowercase hex digit (true of ""): `str.strip` leaves nothing of it.
    One C call, where a loop over the characters would be one step per character."""
    return not text.strip(_HEX_DIGITS)


def normalize_trace_id(trace_id: str) -> str:
    """A 32-character trace id whose high half is zero as the 64-bit id in its low half (Zipkin's rule).

    That is how a 64-bit trace travels in W3C and OTLP, which only carry 128 bits: reading it back as
    64-bit lets every format and every path name the same trace with the same string.
    """
    if len(trace_id) == 32 and trace_id.startswith(_ZERO_HIGH_HALF):
        return trace_id[16:]
    return trace_id


def id_from_bytes(value: bytes, field: str, sizes: tuple[int, ...]) -> str:
    """A binary id (proto3 `bytes`) as lowercase hex; `sizes` are the byte lengths allowed."""
    if len(value) not in sizes:
        allowed = " or ".join(str(size) for size in sizes)
        raise SpanDecodeError(field, f"must be {allowed} bytes, got {len(value)}")
    if not any(value):
        raise SpanDecodeError(field, "must not be all zeros")
    return value.hex()


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
