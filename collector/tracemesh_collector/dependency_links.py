"""Dependency links for the query APIs, counted a slice at a time so that a large first count does not stall ingest.

The first `/dependencies` after a large ingest counts the calls of every trace added since (2.4 s at a
million spans in `python -m bench.collector`). Counted in one go, that would hold the event loop, and
every ingest and query of the collector with it, for as long: a sidecar's export would wait, or time out
and drop its spans. Here the store counts SLICE traces at a time and the loop serves what is waiting
between two slices; the links are summed once nothing is left to count.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from tracemesh_collector.dependencies import DependencyLink

SLICE = 2048  # traces per turn of the event loop: about 15 ms of counting


class CountedInSlices(Protocol):
    """What this needs of the store (SpanStore)."""

    def count_dependencies(self, budget: int) -> bool: ...

    def dependencies(self, end_us: int, lookback_us: int) -> list[DependencyLink]: ...


async def dependency_links(store: CountedInSlices, end_us: int, lookback_us: int) -> list[DependencyLink]:
    """`store.dependencies(end_us, lookback_us)`, the changed traces counted between turns of the event loop."""
    while not store.count_dependencies(SLICE):
        await asyncio.sleep(0)
    return store.dependencies(end_us, lookback_us)
