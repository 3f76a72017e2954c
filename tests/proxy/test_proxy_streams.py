"""Bodies far larger than memory bounds, tunnels, and traffic that is not HTTP/1.x."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from proxy_harness import Origin, RawOrigin, client_config, pair, request, server_config, sidecar

MIB = 1024 * 1024


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def _peak_rss(stop: asyncio.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], _rss_bytes())
        await asyncio.sleep(0.02)


async def test_large_upload_streams_through_the_pair_in_bounded_memory(origin: Origin) -> None:
    size = 256 * MIB
    block = bytes(range(256)) * 256  # 64 KiB
    expected = hashlib.sha256()
    for _ in range(size // len(block)):
        expected.update(block)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // len(block)):
            yield block

    async with pair(origin.port) as (client_side, _):
        baseline = _rss_bytes()
        peak = [baseline]
        stop = asyncio.Event()
        sampler = asyncio.create_task(_peak_rss(stop, peak))
        async with aiohttp.ClientSession() as session, session.post("http://reviews:9080/echo", data=body(),
                                proxy=f"http://127.0.0.1:{client_side.outbound_port}") as response:
            seen = await response.json()
        stop.set()
        await sampler
    assert seen["body_size"] == size
    assert seen["body_sha256"] == expected.hexdigest()
    # Client, both sidecars and the app share this process: all of them together stay far below the body size.
    assert peak[0] - baseline < 48 * MIB


async def test_large_chunked_download_arrives_intact(origin: Origin) -> None:
    size = 64 * MIB
    async with pair(origin.port) as (client_side, _):
        digest = hashlib.sha256()
        received = 0
        url = f"http://reviews:9080/stream?size={size}&chunk=100000"
        proxy = f"http://127.0.0.1:{client_side.outbound_port}"
        async with aiohttp.ClientSession() as session, session.get(url, proxy=proxy) as response:
            async for chunk in response.content.iter_any():
                digest.update(chunk)
                received += len(chunk)
        span = (await client_side.exporters.wait_spans(1))[0]
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(b"z" * size).hexdigest()
    assert span.tags["response_size"] == str(size)


async def test_a_slow_reader_throttles_the_upstream_instead_of_buffering(origin: Origin) -> None:
    size = 128 * MIB
    async with pair(origin.port) as (client_side, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", client_side.outbound_port, limit=MIB)
        writer.write(b"GET /stream?size=%d&chunk=65536 HTTP/1.1\r\nHost: reviews:9080\r\n\r\n" % size)
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        baseline = _rss_bytes()
        await asyncio.sleep(0.5)  # not reading: the app must be stopped by flow control, not buffered
        stalled_growth = _rss_bytes() - baseline
        received = 0
        async with asyncio.timeout(30):
            while chunk := await reader.read(MIB):
                received += len(chunk)
                if chunk.endswith(b"0\r\n\r\n"):
                    break
        writer.close()
    assert stalled_growth < 16 * MIB
    assert received > size


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def test_connect_opens_an_opaque_tunnel() -> None:
    async with RawOrigin(_echo) as app, sidecar(client_config([])) as client_side:
        reader, writer = await asyncio.open_connection("127.0.0.1", client_side.outbound_port)
        writer.write(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (app.port, app.port))
        established = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        payload = b"\x16\x03\x01 any bytes at all \x00\xff"
        writer.write(payload)
        echoed = await asyncio.wait_for(reader.readexactly(len(payload)), 5)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    assert established.startswith(b"HTTP/1.1 200")
    assert echoed == payload


async def test_connect_to_a_refused_port_is_503() -> None:
    async with sidecar(client_config([])) as client_side:
        response = await request(client_side.outbound_port, b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status == 503


async def test_non_http_on_the_explicit_outbound_listener_is_400() -> None:
    async with sidecar(client_config([])) as client_side:
        response = await request(client_side.outbound_port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        assert client_side.stats.get("outbound.downstream_rq_malformed") == 1
    assert response.status == 400


async def test_non_http_traffic_to_a_known_destination_passes_through_unharmed() -> None:
    payloads = [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),
                b"\x00\x01binary protocol\xff" + bytes(range(64))]
    async with RawOrigin(_echo) as app, sidecar(server_config(app.port)) as server_side:
        for payload in payloads:
            reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
            writer.write(payload)
            echoed = await asyncio.wait_for(reader.readexactly(len(payload)), 5)
            writer.close()
            assert echoed == payload
        assert server_side.stats.get("inbound.downstream_cx_opaque") == 2


def test_a_client_that_half_closes_before_two_sidecars_open_their_tunnels_gets_its_answer() -> None:
    """The client's EOF reaches each sidecar before its tunnel is up; handing the transport over must pass it on
    once. On uvloop, the sidecar's loop, a transport that saw EOF reports it again when reading resumes: counted
    twice, it closed the tunnel before the answer came back (seen in the netns end-to-end)."""
    payload = bytes(range(256)) * 64 + b"not HTTP at all"

    async def through_two_sidecars() -> list[bytes]:
        echoed = []
        async with RawOrigin(_echo) as app, sidecar(server_config(app.port)) as inner, \
                sidecar(server_config(inner.inbound_port)) as outer:
            for _ in range(20):
                reader, writer = await asyncio.open_connection("127.0.0.1", outer.inbound_port)
                writer.write(payload)
                writer.write_eof()
                echoed.append(await asyncio.wait_for(reader.read(), 5))
                writer.close()
        return echoed

    assert uvloop.run(through_two_sidecars()) == [payload] * 20


async def test_websocket_upgrade_is_tunnelled(origin: Origin) -> None:
    async with pair(origin.port) as (client_side, _):
        async with aiohttp.ClientSession() as session, session.ws_connect("http://reviews:9080/ws",
                                      proxy=f"http://127.0.0.1:{client_side.outbound_port}") as ws:
            await ws.send_str("hi")
            reply = await asyncio.wait_for(ws.receive_str(), 5)
        span = (await client_side.exporters.wait_spans(1))[0]
    assert reply == "echo:hi"
    assert span.tags["http.status_code"] == "101"


async def test_origin_form_request_reaches_the_app_unchanged_through_the_inbound_listener(origin: Origin) -> None:
    async with sidecar(server_config(origin.port)) as server_side:
        response = await request(server_side.inbound_port,
                                 b"POST /echo HTTP/1.1\r\nHost: r\r\nContent-Length: 3\r\n\r\nabc")
    assert json.loads(response.body)["body_sha256"] == hashlib.sha256(b"abc").hexdigest()
