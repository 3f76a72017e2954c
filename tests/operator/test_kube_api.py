"""KubeApi: merge-patches with kopf's credentials; a failed write says so and never raises."""

from __future__ import annotations

from typing import Any

import kopf
from aiohttp import web

from tracemesh_operator.kube_api import KubeApi


async def test_patch_sends_a_merge_patch_with_the_credentials_and_reports_failures(unused_tcp_port: int) -> None:
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "type": request.content_type,
                     "auth": request.headers.get("Authorization"), "body": await request.json()})
        return web.Response(status=int(request.match_info["status"]))

    app = web.Application()
    app.router.add_patch("/{status}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    kube = KubeApi()
    try:
        assert not await kube.patch("/200", {"status": {}})  # not logged in yet
        await kube.connect(kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}/", token="secret"))
        assert await kube.patch("/200", {"status": {"conditions": []}})
        assert seen == [{"path": "/200", "type": "application/merge-patch+json", "auth": "Bearer secret",
                         "body": {"status": {"conditions": []}}}]
        assert not await kube.patch("/404", {})
        assert not await kube.patch("/500", {})
    finally:
        await kube.close()
        await runner.cleanup()
    await kube.connect(kopf.ConnectionInfo(server=f"http://127.0.0.1:{unused_tcp_port}"))
    try:
        assert not await kube.patch("/200", {})
    finally:
        await kube.close()
