"""An API server front for tests: kmock for everything, plus the pods' port-forward, which kmock lacks.

The port-forward is the API server's websocket protocol as the official client speaks it
(kubernetes/stream/ws_client.py PortForward, subprotocol v4.channel.k8s.io): per port a data
channel (2i) and an error channel (2i+1), each opened by a frame carrying the port number (2
bytes, little-endian), then binary frames whose first byte is the channel. Each (namespace, pod,
port) is carried to a local TCP address the test names, standing in for the pod's port.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web

PodPort = tuple[str, str, int]  # namespace, pod, port
SUBPROTOCOL = "v4.channel.k8s.io"
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


@contextlib.asynccontextmanager
async def api_server_front(kmock_url: str, pods: Mapping[PodPort, tuple[str, int]]) -> AsyncIterator[str]:
    """The front's URL while in the block."""
    session = aiohttp.ClientSession()

    async def port_forward(request: web.Request) -> web.StreamResponse:
        port = int(request.query["ports"])
        target = pods.get((request.match_info["namespace"], request.match_info["pod"], port))
        if target is None:
            raise web.HTTPNotFound(text="no such pod port")
        socket = web.WebSocketResponse(protocols=(SUBPROTOCOL,))
        await socket.prepare(request)
        number = port.to_bytes(2, "little")
        await socket.send_bytes(b"\x00" + number)
        await socket.send_bytes(b"\x01" + number)
        reader, writer = await asyncio.open_connection(*target)

        async def to_pod() -> None:
            async for message in socket:
                if message.type == aiohttp.WSMsgType.BINARY and message.data[:1] == b"\x00":
                    writer.write(message.data[1:])
                    await writer.drain()
            writer.close()

        async def from_pod() -> None:
            while data := await reader.read(65536):
                await socket.send_bytes(b"\x00" + data)
            await socket.close()

        await asyncio.gather(to_pod(), from_pod(), return_exceptions=True)
        return socket

    async def to_kmock(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        async with session.request(request.method, kmock_url.rstrip("/") + request.path_qs, headers=headers,
                                   data=await request.read()) as answer:
            return web.Response(status=answer.status, body=await answer.read(),
                                content_type=answer.content_type)

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{namespace}/pods/{pod}/portforward", port_forward)
    app.router.add_route("*", "/{path:.*}", to_kmock)
    runner = web.AppRunner(app, shutdown_timeout=0.25)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
        await session.close()
