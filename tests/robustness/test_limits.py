"""Oversized request lines and header blocks: a 431 (Envoy: 60 KiB of headers, 100 headers), bounded memory."""

from __future__ import annotations

import asyncio
import contextlib

from robust_harness import CountingOrigin, ProxyProcess, exchange, status_of

TOO_LARGE = (400, 414, 431)


def _get(path: bytes, headers: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n%s\r\n" % (path, headers)


def _was_forwarded(origin: CountingOrigin, path: str) -> bool:
    return any(seen.path.startswith(path) for seen in origin.seen)


async def test_a_request_line_over_64_kib_is_refused(proxy: ProxyProcess, session_origin: CountingOrigin) -> None:
    raw = b"GET /long-line/" + b"a" * (64 * 1024) + b" HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n"
    answer = await exchange(proxy.inbound_port, raw)
    assert status_of(answer) in TOO_LARGE
    assert not _was_forwarded(session_origin, "/long-line/")


async def test_a_header_block_over_60_kib_is_431(proxy: ProxyProcess, session_origin: CountingOrigin) -> None:
    headers = b"".join(b"x-big-%d: %s\r\n" % (index, b"v" * 1000) for index in range(70))
    answer = await exchange(proxy.inbound_port, _get(b"/big-block", headers))
    assert status_of(answer) == 431
    assert not _was_forwarded(session_origin, "/big-block")


async def test_more_than_100_headers_is_431(proxy: ProxyProcess, session_origin: CountingOrigin) -> None:
    headers = b"".join(b"x-many-%d: v\r\n" % index for index in range(150))
    answer = await exchange(proxy.inbound_port, _get(b"/many", headers))
    assert status_of(answer) == 431
    assert not _was_forwarded(session_origin, "/many")


async def test_a_header_block_within_envoys_limits_is_forwarded(proxy: ProxyProcess,
                                                               session_origin: CountingOrigin) -> None:
    headers = b"".join(b"x-fine-%d: %s\r\n" % (index, b"v" * 500) for index in range(90))
    answer = await exchange(proxy.inbound_port, _get(b"/fine", headers))
    assert status_of(answer) == 200
    assert _was_forwarded(session_origin, "/fine")


async def _stream_until_cut_off(proxy: ProxyProcess, opening: bytes, block: bytes,
                                timeout_s: float) -> tuple[int, bytes]:
    """Send `opening`, then `block` after `block` (up to 8 MiB) until the proxy stops reading or closes;
    the proxy's RSS growth meanwhile, and the start of its answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.inbound_port)
    rss_before = proxy.rss_bytes()
    sent = 0
    try:
        writer.write(opening)
        async with asyncio.timeout(timeout_s):
            while sent < 8 * 1024 * 1024 and not writer.is_closing():
                writer.write(block)
                await writer.drain()
                sent += len(block)
    except (ConnectionError, TimeoutError):
        pass
    grown = proxy.rss_bytes() - rss_before
    answer = b""
    with contextlib.suppress(ConnectionError, TimeoutError):
        answer = await asyncio.wait_for(reader.read(200), 2)
    writer.transport.abort()
    return grown, answer


async def test_an_endless_header_value_is_cut_off_with_memory_bounded(proxy: ProxyProcess) -> None:
    """8 MiB of one header value, sent in 64 KiB writes: the proxy must stop reading (431/close) long before."""
    grown, answer = await _stream_until_cut_off(
        proxy, b"GET /endless HTTP/1.1\r\nHost: reviews\r\nx-endless: ", b"a" * 65536, timeout_s=10)
    assert proxy.alive()
    assert grown < 2 * 1024 * 1024, f"the proxy grew by {grown >> 20} MiB while one header value streamed in"
    assert status_of(answer) in TOO_LARGE


async def test_a_large_head_arriving_in_small_pieces_is_forwarded(proxy: ProxyProcess,
                                                                  session_origin: CountingOrigin) -> None:
    """Below the limit, however it is split: reads that end inside a header count once, not again."""
    headers = b"".join(b"x-piece-%d: %s\r\n" % (index, b"v" * 500) for index in range(90))
    raw = _get(b"/pieces", headers)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.inbound_port)
    for start in range(0, len(raw), 700):
        writer.write(raw[start:start + 700])
        await writer.drain()
        await asyncio.sleep(0.002)
    answer = await asyncio.wait_for(reader.read(200), 3)
    writer.close()
    assert status_of(answer) == 200
    assert _was_forwarded(session_origin, "/pieces")


async def test_refused_heads_are_counted(proxy: ProxyProcess) -> None:
    before = proxy.stats().get("inbound.downstream_rq_headers_too_large", 0)
    headers = b"".join(b"x-many-%d: v\r\n" % index for index in range(101))
    assert status_of(await exchange(proxy.inbound_port, _get(b"/counted", headers))) == 431
    assert proxy.stats().get("inbound.downstream_rq_headers_too_large", 0) == before + 1


async def test_endless_request_trailers_are_cut_off_with_memory_bounded(proxy: ProxyProcess) -> None:
    grown, answer = await _stream_until_cut_off(
        proxy, b"POST /trailers HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
        b"".join(b"x-trailer-%d: %s\r\n" % (index, b"t" * 60) for index in range(800)), timeout_s=5)
    assert proxy.alive()
    assert grown < 2 * 1024 * 1024, f"the proxy grew by {grown >> 20} MiB while trailers streamed in"
    assert status_of(answer) in TOO_LARGE
