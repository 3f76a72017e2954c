"""Span and trace ids between their text form (lowercase hex, as the Span model holds them) and bytes."""

from __future__ import annotations

from tracemesh_sidecar.spans.errors import SpanDecodeError

_HEX_DIGITS = frozenset("0123456789abcdef")


def check_hex_id(value: object, field: str, lengths: tuple[int, ...], what: str) -> str:
    """`value` as a lowercase hex id of one of `lengths` characters; uppercase is accepted, as Zipkin does.

    An all-zero id is rejected: B3, W3C and OTLP all reserve it for "no id".
    """
    if value is None:
        raise SpanDecodeError(field, f"is required: {what}")
    if not isinstance(value, str):
        raise SpanDecodeError(field, f"must be {what}, got {_show(value)}")
    lowered = value.lower()
    if len(lowered) not in lengths or not _HEX_DIGITS.issuperset(lowered):
        raise SpanDecodeError(field, f"must be {what}, got {_show(value)}")
    if lowered.count("0") == len(lowered):
        raise SpanDecodeError(field, f"must not be all zeros, got {value!r}")
    return lowered


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
