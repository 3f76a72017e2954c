from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import WSMsgType, web
from proxy_harness import Origin

# The HTTP/2 origin and clients (h2_harness) live with the robustness tests, which share this directory's harness.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "robustness"))


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    """An aiohttp app standing for the application behind the server sidecar."""
    info = Origin(port=0)

    async def record(request: web.Request) -> dict[str, object]:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            info.peers.add((peer[0], peer[1]))
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        seen: dict[str, object] = {
            "method": request.method, "path": request.path_qs, "version": f"{request.version[0]}.{request.version[1]}",
            "headers": [[key.lower(), value] for key, value in request.headers.items()],
            "body_sha256": digest.hexdigest(), "body_size": size,
        }
        info.requests.append(seen)
        return seen

    async def echo(request: web.Request) -> web.StreamResponse:
        return web.json_response(await record(request))

    async def stream(request: web.Request) -> web.StreamResponse:
        await record(request)
        size = int(request.query.get("size", "0"))
        piece = int(request.query.get("chunk", "65536"))
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        block = b"z" * piece
        sent = 0
        while sent < size:
            part = block[: min(piece, size - sent)]
            await response.write(part)
            sent += len(part)
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.StreamResponse:
        await record(request)
        await asyncio.sleep(float(request.query.get("delay", "1")))
        return web.Response(text="late")

    async def status(request: web.Request) -> web.StreamResponse:
        await record(request)
        return web.Response(status=int(request.match_info["code"]))

    async def websocket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str(f"echo:{message.data}")
        return ws

    app = web.Application(client_max_size=1 << 40)
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_get("/stream", stream)
    app.router.add_get("/slow", slow)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/ws", websocket)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    info.port = int(runner.addresses[0][1])
    try:
        yield info
    finally:
        await runner.cleanup()
