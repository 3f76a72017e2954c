"""Interleaved rounds: each path of a benchmark measured once a round, the order turned between rounds.

On a shared machine other tenants' load and the CPU's frequency drift over minutes. Measured one after another,
a path that ran in a busy minute looks dearer than one that ran in a quiet one, and a ratio between the two says
more about the minutes than about the proxies: two `python -m bench proxy` runs of the same build on this
machine (2026-12-03) measured nginx at 15 and at 24 ms per 1000 requests, and the tracemesh pair, measured first,
at 61 and at 54. In rounds, each path runs early, midway and late in the run; a ratio is taken within each round,
and the report gives the median and the range of the rounds' ratios.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


def rotated(items: Sequence[T], round_index: int, rounds: int) -> list[T]:
    """The order of round `round_index` (of `rounds`): the list turned so that it starts about len/rounds items
    further on each round; with as many rounds as items, every item runs in every position once."""
    if not items:
        return []
    shift = round_index * len(items) // rounds % len(items)
    return [*items[shift:], *items[:shift]]


@dataclass(frozen=True)
class Spread:
    """The median of one figure over the rounds, and its lowest and highest value."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("a spread of no values")
        return cls(statistics.median(values), min(values), max(values))

    def format(self, template: str) -> str:
        """`2.9x (2.7x to 3.1x)` for the template `{:.1f}x` (not a dash: a figure may be negative); the median alone
        when every round gave the same."""
        median, low, high = (template.format(value) for value in (self.median, self.low, self.high))
        return median if low == high else f"{median} ({low} to {high})"


def rounds_summary(count: int) -> str:
    """What a report's figures and ratios are, said once for every benchmark that measures in rounds."""
    return (f"{count} round(s), every path once a round, the order turned each round (bench/rounds.py); figures: "
            f"the rounds' medians; ratios: the median of each round's ratio (lowest to highest)")


def per_round(paths: Sequence[T], references: Sequence[T], figure: Callable[[T, T], float]) -> Spread:
    """`figure` of each round's result of one path against the same round's result of another. A run stopped
    mid-round (a proxy that did not start) compares the rounds both paths finished."""
    return Spread.of([figure(path, reference) for path, reference in zip(paths, references, strict=False)])
