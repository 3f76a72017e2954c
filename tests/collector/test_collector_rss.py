"""Refused 100 MB posts cost the collector no lasting memory (issue 10's acceptance: RSS within 20 MB of its start).

The collector runs as its own process, its RSS read from /proc. One post declares its 100 MB (refused
from the Content-Length), two are chunked (read up to the cap, then refused), one is gzip that inflates
to 100 MB (inflated up to the cap, then refused); the client sends every byte, as a careless exporter would.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

import aiohttp
from collector_process import CollectorProcess, collector_process
from collector_samples import NOW_US, bookinfo_trace, trace_id

from tracemesh_sidecar.spans import zipkin_json

MB = 1024 * 1024


async def hundred_megabytes() -> AsyncIterator[bytes]:
    piece = b" " * MB
    for _ in range(100):
        yield piece


async def settled_rss(collector: CollectorProcess, ceiling: int) -> int:
    """RSS once it is under `ceiling`, or after 10 s: memory freed by a refusal is returned while the server
    still discards the rest of the refused body."""
    for _ in range(100):
        rss = collector.rss_bytes()
        if rss < ceiling:
            return rss
        await asyncio.sleep(0.1)
    return rss


async def test_four_refused_100_mb_posts_leave_rss_where_it_started() -> None:
    async with collector_process() as collector, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        url = f"{collector.urls['Zipkin']}/api/v2/spans"
        trace = bookinfo_trace(trace_id(1), NOW_US)
        async with http.post(url, data=zipkin_json.encode_spans(trace),
                             headers={"Content-Type": "application/json"}) as response:
            assert response.status == 202
        before = collector.rss_bytes()
        declared = b" " * (100 * MB)
        bomb = gzip.compress(declared)  # 100 KB that inflate to 100 MB
        posts: list[tuple[object, dict[str, str]]] = [
            (declared, {}), (hundred_megabytes(), {}), (bomb, {"Content-Encoding": "gzip"}), (hundred_megabytes(), {})]
        for body, headers in posts:
            async with http.post(url, data=body, headers={"Content-Type": "application/json", **headers}) as response:
                assert response.status == 413
        after = await settled_rss(collector, before + 20 * MB)
        async with http.get(f"{collector.urls['Zipkin']}/api/v2/trace/{trace_id(1)}") as response:
            assert len(await response.json()) == 7  # the stored trace is all still there
    assert after - before < 20 * MB, f"RSS grew from {before / MB:.1f} MB to {after / MB:.1f} MB"
