"""Clients that dawdle, hoard connections, give up mid-body, or come all at once, against the proxy process.

Other clients must be served meanwhile, and afterwards the process holds no more file descriptors
than before (idle pooled upstream connections aside: the pool may keep those on purpose).
"""

from __future__ import annotations

import asyncio
import time

from proxy_harness import request
from robust_harness import CountingOrigin, ProxyProcess

GOOD = b"GET /good HTTP/1.1\r\nHost: reviews\r\n\r\n"


def _idle_upstreams(proxy: ProxyProcess) -> int:
    idle = proxy.clusters()["idle_connections"]
    assert isinstance(idle, dict)
    return sum(int(count) for count in idle.values())


def _held_fds(proxy: ProxyProcess) -> int:
    """File descriptors not explained by idle pooled upstream connections."""
    return proxy.fd_count() - _idle_upstreams(proxy)


async def _settles_to(proxy: ProxyProcess, baseline: int, timeout_s: float = 5.0) -> int:
    """Held fds once they are back at `baseline` or below, else after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    held = _held_fds(proxy)
    while held > baseline and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        held = _held_fds(proxy)
    return held


async def _reaches(proxy: ProxyProcess, count: int, timeout_s: float = 3.0) -> int:
    deadline = time.monotonic() + timeout_s
    held = _held_fds(proxy)
    while held < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        held = _held_fds(proxy)
    return held


async def _timed_good_request(proxy: ProxyProcess) -> float:
    started = time.monotonic()
    response = await request(proxy.inbound_port, GOOD, timeout_s=2.0)
    assert response.status == 200
    return time.monotonic() - started


async def test_slowloris_headers_do_not_hold_up_other_clients(proxy: ProxyProcess) -> None:
    baseline = _held_fds(proxy)
    writers = []
    for _ in range(50):
        _, writer = await asyncio.open_connection("127.0.0.1", proxy.inbound_port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: reviews\r\n")
        writers.append(writer)
    slowest = 0.0
    for round_ in range(10):  # about a second of one header byte per connection every 100 ms
        for writer in writers:
            writer.write(b"x-slow-%d: v\r\n" % round_ if round_ % 2 else b"x")
        slowest = max(slowest, await _timed_good_request(proxy))
        await asyncio.sleep(0.1)
    for writer in writers:
        writer.transport.abort()
    assert slowest < 1.0
    assert await _settles_to(proxy, baseline) <= baseline
    assert proxy.alive()


async def test_many_idle_connections_do_not_block_others_nor_leak(proxy: ProxyProcess) -> None:
    baseline = _held_fds(proxy)
    writers = []
    for _ in range(300):
        _, writer = await asyncio.open_connection("127.0.0.1", proxy.inbound_port)
        writers.append(writer)
    assert await _timed_good_request(proxy) < 1.0
    assert await _reaches(proxy, baseline + 300) >= baseline + 300
    for writer in writers:
        writer.transport.abort()
    assert await _settles_to(proxy, baseline) <= baseline


async def test_clients_that_vanish_mid_body_release_their_upstream_connections(proxy: ProxyProcess) -> None:
    baseline = _held_fds(proxy)
    dc_before = proxy.stats().get("inbound.response_flags.DC", 0)
    for index in range(20):
        _, writer = await asyncio.open_connection("127.0.0.1", proxy.inbound_port)
        writer.write(b"POST /upload-%d HTTP/1.1\r\nHost: reviews\r\nContent-Length: 100000\r\n\r\n" % index
                     + b"p" * 1000)
        await writer.drain()
        await asyncio.sleep(0.01)
        if index % 2:
            writer.transport.abort()  # RST
        else:
            writer.close()  # FIN
    assert await _timed_good_request(proxy) < 1.0
    assert await _settles_to(proxy, baseline) <= baseline
    deadline = time.monotonic() + 2
    while proxy.stats().get("inbound.response_flags.DC", 0) < dc_before + 20 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert proxy.stats().get("inbound.response_flags.DC", 0) == dc_before + 20


async def test_500_concurrent_connections_are_all_answered_without_leaking_fds(
        proxy: ProxyProcess, session_origin: CountingOrigin) -> None:
    baseline = _held_fds(proxy)
    seen_before = len(session_origin.seen)

    async def one(index: int) -> int:
        # `/close`: the origin closes after answering, so no upstream connection is pooled either.
        response = await request(proxy.inbound_port,
                                 b"GET /close-%d HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n" % index,
                                 timeout_s=15.0)
        return response.status

    async with asyncio.timeout(20):
        statuses = await asyncio.gather(*(one(index) for index in range(500)), return_exceptions=True)
    failures = [status for status in statuses if status != 200]
    assert failures == [], f"{len(failures)} of 500 failed, e.g. {failures[:3]}"
    assert len(session_origin.seen) - seen_before == 500
    assert await _settles_to(proxy, baseline) <= baseline
    assert proxy.alive()


async def _pipelining_flood(proxy: ProxyProcess, seconds: float) -> int:
    """Pipeline requests for `seconds` without reading an answer; the bytes the proxy took."""
    _, writer = await asyncio.open_connection("127.0.0.1", proxy.inbound_port)
    burst = b"GET /flood HTTP/1.1\r\nHost: reviews\r\n\r\n" * 1000
    sent = 0
    try:
        async with asyncio.timeout(seconds):
            while sent < 64 * 1024 * 1024:
                writer.write(burst)
                await writer.drain()
                sent += len(burst)
    except TimeoutError:
        pass
    writer.transport.abort()
    return sent


async def test_a_pipelining_flood_from_a_client_that_never_reads_stays_bounded(proxy: ProxyProcess) -> None:
    # The proxy answers thousands of these requests a second, each with a span: a first flood fills the
    # span export queue towards its bound (memory the proxy keeps by design); six more at once must add
    # far less than parsing a whole read of them ahead would (some 20 MiB per connection, 120 MiB for six).
    # The bound leaves room for the queue's last few MiB, which a slow run (pure Python, a loaded machine)
    # fills only during the six: 7 MiB in one CI run.
    await _pipelining_flood(proxy, 1.0)
    rss_before = proxy.rss_bytes()
    sent = await asyncio.gather(*(_pipelining_flood(proxy, 2.0) for _ in range(6)))
    grown = proxy.rss_bytes() - rss_before
    assert max(sent) < 16 * 1024 * 1024, "the proxy kept reading requests it could not answer"
    assert grown < 12 * 1024 * 1024, f"the proxy grew by {grown >> 20} MiB"
    assert await _timed_good_request(proxy) < 1.0
