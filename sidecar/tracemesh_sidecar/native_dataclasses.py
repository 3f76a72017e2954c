"""Copy and pickle for the dataclasses that write their own `__init__` (spans.model's span classes, telemetry's
Record): mypyc compiles an `__init__` a class defines, where the one @dataclass generates stays interpreted
Python, and a native class with its own `__init__` is created only through it, so copy and pickle rebuild one
from its fields (tests/packaging/test_explicit_inits.py holds each `__init__` to its fields, in order)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any


def rebuilt_from_fields(instance: Any) -> tuple[type[Any], tuple[object, ...]]:
    """`__reduce__` of a dataclass whose `__init__` takes its fields in order: its class and its field values."""
    return type(instance), tuple(getattr(instance, each.name) for each in fields(instance))
