"""The start-up hold of a non-native sidecar: returns once the proxy's readiness endpoint answers 200."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tracemesh_sidecar.discovery.wait_ready import main, wait_ready


async def test_waits_until_ready_then_returns() -> None:
    answers = [503, 503, 200]

    async def ready(request: web.Request) -> web.Response:
        return web.Response(status=answers.pop(0) if len(answers) > 1 else answers[0])

    app = web.Application()
    app.router.add_get("/healthz/ready", ready)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/healthz/ready"
    try:
        assert await asyncio.to_thread(wait_ready, url, 5.0) is True
        assert answers == [200]
    finally:
        await runner.cleanup()
    assert await asyncio.to_thread(main, ["--url", url, "--timeout", "0.3"]) == 1  # nothing listens now
