"""Requests at the edges of HTTP/1.1 that real clients send: an h2c upgrade offer, a long request line in pieces."""

from __future__ import annotations

import asyncio

import pytest
from proxy_harness import RawOrigin, read_request_head, read_response, server_config, sidecar
from robust_harness import CountingOrigin


async def test_an_h2c_upgrade_offer_with_a_body_is_answered_as_a_plain_request() -> None:
    """`curl --http2 -d hello http://...` sends exactly this; servers that do not speak h2c just answer it."""
    bodies: list[bytes] = []

    async def declines_upgrades(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_request_head(reader)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        bodies.append(await asyncio.wait_for(reader.readexactly(length), 1))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    async with RawOrigin(declines_upgrades) as app, sidecar(server_config(app.port)) as server_side:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(b"POST /h2c HTTP/1.1\r\nHost: reviews\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                     b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello")
        response = await asyncio.wait_for(read_response(reader), 4)
        writer.close()
    assert bodies == [b"hello"]
    assert response.status == 200 and response.body == b"ok"


async def test_a_long_request_line_arriving_in_pieces_is_still_treated_as_http(
        counting_origin: CountingOrigin) -> None:
    async with sidecar(server_config(counting_origin.port)) as server_side:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(b"GET /long/")
        for _ in range(5):  # 20 KiB of path, 4 KiB at a time
            await asyncio.sleep(0.02)
            writer.write(b"p" * 4096)
        writer.write(b" HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n")
        response = await asyncio.wait_for(read_response(reader), 3)
        writer.close()
    if response.status == 200:  # forwarded: then as HTTP, with the trace context a traced request gets
        assert "x-b3-traceid" in dict(counting_origin.seen[0].headers)
    else:
        assert response.status in (400, 414, 431)


async def test_h2c_offers_are_stripped_and_the_requests_after_them_still_parsed(
        counting_origin: CountingOrigin) -> None:
    offer = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
    async with sidecar(server_config(counting_origin.port)) as server_side:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(b"POST /chunked HTTP/1.1\r\nHost: r\r\n" + offer + b"Transfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n0\r\n\r\n"
                     b"GET /bodiless HTTP/1.1\r\nHost: r\r\n" + offer + b"\r\n"
                     b"GET /after HTTP/1.1\r\nHost: r\r\n\r\n")
        responses = [await asyncio.wait_for(read_response(reader), 3) for _ in range(3)]
        writer.close()
    assert [(response.status, response.body) for response in responses] == [
        (200, b"ok:/chunked"), (200, b"ok:/bodiless"), (200, b"ok:/after")]
    assert counting_origin.paths() == ["/chunked", "/bodiless", "/after"]
    assert counting_origin.seen[0].body == b"hello"
    for seen in counting_origin.seen:
        assert not {"upgrade", "http2-settings", "connection"} & {name for name, _ in seen.headers}


@pytest.mark.parametrize("offer", [
    pytest.param(b"GET /up HTTP/1.1\r\nHost: r\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", id="no-body"),
    pytest.param(b"POST /up HTTP/1.1\r\nHost: r\r\nConnection: Upgrade\r\nUpgrade: foo/1\r\nContent-Length: 5\r\n\r\n"
                 b"hello", id="with-body"),
])
async def test_an_upgrade_the_app_declines_leaves_the_connection_speaking_http(
        counting_origin: CountingOrigin, offer: bytes) -> None:
    """The app answers 200, not 101: what the client sent after the offer is HTTP again, not tunnel bytes."""
    async with sidecar(server_config(counting_origin.port)) as server_side:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(offer + b"GET /next HTTP/1.1\r\nHost: r\r\n\r\n")
        responses = [await asyncio.wait_for(read_response(reader), 3) for _ in range(2)]
        writer.close()
    assert [(response.status, response.body) for response in responses] == [(200, b"ok:/up"), (200, b"ok:/next")]
    assert counting_origin.paths() == ["/up", "/next"]
