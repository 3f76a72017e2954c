"""Upstreams that misbehave: the client gets an Envoy-style 5xx with a response flag, or an honest close.

Never a response that looks complete when it is not, and never bytes of one response in another.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable

import pytest
from proxy_harness import RawOrigin, Sidecar, ok, read_request_head, read_response, request, server_config, sidecar
from robust_harness import exchange, status_of

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
GET = b"GET /x HTTP/1.1\r\nHost: reviews\r\n\r\n"
GET_AND_CLOSE = b"GET /x HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n"


def answering(*responses: bytes, close: bool = True) -> Handler:
    """An upstream that answers the requests on each connection with `responses` in turn, raw.

    With `close`, it closes after the last one; else it keeps answering from the first again."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(1 if close else 20):
            for response in responses:
                await read_request_head(reader)
                writer.write(response)
                await writer.drain()
    return handler


async def _flag(server_side: Sidecar) -> str:
    span = (await server_side.exporters.wait_spans(1, timeout_s=2.0))[0]
    return span.tags["response_flags"]


@pytest.mark.parametrize("garbage", [
    pytest.param(b"garbage\r\n\r\n", id="not-http"),
    pytest.param(b"HTTP/1.1 abc OK\r\n\r\n", id="bad-status"),
    pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc", id="two-content-lengths"),
    pytest.param(b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", id="header-without-colon"),
    pytest.param(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n", id="unrequested-101"),
    pytest.param(b"\x00\x01\x02\x03" * 10, id="binary"),
])
async def test_a_garbage_response_is_502_upe(garbage: bytes) -> None:
    # Envoy >= 1.18: an upstream protocol error is a 502 (Router::onUpstreamReset), flagged UPE.
    async with RawOrigin(answering(garbage)) as app, sidecar(server_config(app.port)) as server_side:
        response = await request(server_side.inbound_port, GET)
        flag = await _flag(server_side)
        assert server_side.stats.get("inbound.response_flags.UPE") == 1
    assert response.status == 502
    assert flag == "UPE"


async def test_an_answer_before_the_request_body_ends_resets_both_legs_as_envoy_does() -> None:
    """Envoy's router resets the upstream stream when its response completes before the downstream request
    has (source/common/router/router.cc, Filter::onUpstreamComplete: `if (!downstream_end_stream_) ...
    upstream_request.resetStream()`; an HTTP/1.1 stream reset closes its connection), and its connection
    manager resets a downstream stream whose request was not read to its end (conn_manager_impl.cc,
    doEndStream: `!remoteDecodeComplete()`), which on HTTP/1.1 closes the connection after the response.
    So the rest of a known-length body is not read and discarded to keep either connection."""
    upstream_ends: list[bytes] = []

    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly" if b"POST" in head else ok(b"get"))
        await writer.drain()
        if b"POST" in head:
            async with asyncio.timeout(5):
                upstream_ends.append(await reader.read())  # what came before the proxy closed this connection

    async with RawOrigin(early) as app, sidecar(server_config(app.port)) as server_side:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: reviews\r\nContent-Length: 1000\r\n\r\n" + b"u" * 10)
        response = await asyncio.wait_for(read_response(reader), 3)
        downstream_rest = await asyncio.wait_for(reader.read(), 3)  # b"" once the proxy closes
        writer.close()
        after = await request(server_side.inbound_port, GET)
        await asyncio.sleep(0.05)
    assert response.status == 200 and response.body == b"early"
    assert response.header("connection") == "close"
    assert downstream_rest == b""
    assert upstream_ends == [b"u" * 10]  # the upstream connection was closed, not kept for the next request
    assert after.status == 200 and after.body == b"get"
    assert app.connections == 2


@pytest.mark.parametrize("headers", [
    pytest.param(b"".join(b"x-big-%d: %s\r\n" % (i, b"v" * 1000) for i in range(100)), id="100-KiB"),
    pytest.param(b"".join(b"x-many-%d: v\r\n" % i for i in range(101)), id="101-headers"),
])
async def test_an_oversized_response_head_is_502_upe(headers: bytes) -> None:
    huge = b"HTTP/1.1 200 OK\r\n" + headers + b"content-length: 2\r\n\r\nok"
    async with RawOrigin(answering(huge)) as app, sidecar(server_config(app.port)) as server_side:
        response = await request(server_side.inbound_port, GET)
        assert server_side.stats.get("inbound.response_flags.UPE") == 1
    assert response.status == 502


async def test_an_upstream_answering_before_reading_the_body_is_relayed() -> None:
    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\r\ntoo much")
        await writer.drain()
        async with asyncio.timeout(5):  # then reads and discards the body, as nginx's lingering close does
            while await reader.read(65536):
                pass

    async with RawOrigin(early) as app, sidecar(server_config(app.port)) as server_side:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: reviews\r\nContent-Length: 4194304\r\n\r\n")

        async def upload() -> None:
            block = b"u" * 65536
            with contextlib.suppress(ConnectionError):
                for _ in range(64):
                    writer.write(block)
                    await writer.drain()

        uploading = asyncio.create_task(upload())
        response = await asyncio.wait_for(read_response(reader), 3)
        uploading.cancel()
        await asyncio.gather(uploading, return_exceptions=True)
        writer.transport.abort()
        after = await request(server_side.inbound_port, GET)
    assert response.status == 413 and response.body == b"too much"
    # A fresh upstream connection gets the origin's 413 again (the first one was not reused, its body
    # unsent): the point is that the proxy still serves.
    assert after.status in (200, 413, 503)


@pytest.mark.parametrize("partial", [
    pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"a" * 10, id="short-content-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nab", id="chunked-cut"),
    pytest.param(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n", id="chunked-no-last"),
])
async def test_a_response_cut_short_never_looks_complete(partial: bytes) -> None:
    async with RawOrigin(answering(partial)) as app, sidecar(server_config(app.port)) as server_side:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(GET)
        with pytest.raises(asyncio.IncompleteReadError):
            await asyncio.wait_for(read_response(reader), 3)
        writer.close()
        flag = await _flag(server_side)
    assert flag == "UC"


async def test_a_body_delimited_by_close_arrives_whole_and_terminated() -> None:
    body = b"read until close " * 1000
    async with RawOrigin(answering(b"HTTP/1.1 200 OK\r\n\r\n" + body)) as app, \
            sidecar(server_config(app.port)) as server_side:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(GET)
        response = await asyncio.wait_for(read_response(reader), 3)
        writer.close()
        flag = await _flag(server_side)
    assert response.body == body
    assert flag == "-"


@pytest.mark.parametrize("interim", [
    pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n", id="100"),
    pytest.param(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n", id="103"),
    pytest.param(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n", id="100-then-102"),
])
async def test_interim_responses_then_the_final_one(interim: bytes) -> None:
    async with RawOrigin(answering(interim + ok(b"final"), close=False)) as app, \
            sidecar(server_config(app.port)) as server_side:
        answer = await exchange(server_side.inbound_port, GET_AND_CLOSE)
        old = await exchange(server_side.inbound_port, b"GET /x HTTP/1.0\r\nHost: reviews\r\n\r\n")
    assert answer.startswith(interim.split(b"\r\n", 1)[0])
    assert answer.endswith(b"\r\n\r\nfinal")
    assert status_of(old) == 200, "an HTTP/1.0 client must not be sent a 1xx"
    assert old.endswith(b"final")


@pytest.mark.parametrize("status", [204, 304])
async def test_a_bodyless_status_with_a_body_does_not_leak_into_the_next_response(status: int) -> None:
    polluted = b"HTTP/1.1 %d X\r\ncontent-length: 11\r\n\r\nHTTP/1.1 666" % status
    async with RawOrigin(answering(polluted, ok(b"second"), close=False)) as app, \
            sidecar(server_config(app.port)) as server_side:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(GET)
        first = await asyncio.wait_for(read_response(reader), 3)
        writer.write(GET)
        second = await asyncio.wait_for(read_response(reader), 3)
        writer.close()
    assert first.status == status and first.body == b""
    assert second.status in (200, 503)
    assert b"666" not in second.head + second.body


async def test_bytes_after_a_complete_response_are_not_relayed() -> None:
    async with RawOrigin(answering(ok(b"ab") + b"trailing junk", ok(b"again"), close=False)) as app, \
            sidecar(server_config(app.port)) as server_side:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(GET)
        first = await asyncio.wait_for(read_response(reader), 3)
        writer.write(GET)
        second = await asyncio.wait_for(read_response(reader), 3)
        writer.close()
    assert first.body == b"ab"
    assert b"junk" not in second.head + second.body


async def test_a_fuzzed_upstream_never_breaks_the_proxy() -> None:
    """Seeded mutations of valid responses: each answer is a well-formed response or an honest close."""
    rng = random.Random(1121)
    bases = (ok(b"hello world"), b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
             b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"x"),
             b"HTTP/1.0 200 OK\r\n\r\nuntil close")
    current = [b""]

    async def fuzzed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(current[0])
        await writer.drain()

    async with RawOrigin(fuzzed) as app, sidecar(server_config(app.port)) as server_side:
        for case in range(150):
            data = bytearray(rng.choice(bases))
            for _ in range(rng.randrange(1, 4)):
                position = rng.randrange(len(data))
                data[position:position + rng.randrange(0, 2)] = rng.choice(
                    (b"\r", b"\n", b"\x00", b" ", b":", b"9", b"f", b"-", rng.randbytes(3)))
            current[0] = bytes(data)
            answer = await exchange(server_side.inbound_port, GET_AND_CLOSE, timeout_s=1.0)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 "), f"case {case}: {data!r} -> {answer[:80]!r}"
        assert server_side.runtime.ready
        current[0] = ok(b"fine")
        assert (await request(server_side.inbound_port, GET)).status == 200
