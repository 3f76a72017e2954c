"""Test helpers: serve an aiohttp app on an ephemeral loopback port, and fake Bookinfo backends that record calls."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tracemesh_bookinfo.server import SERVICES
from tracemesh_bookinfo.settings import settings_from_env


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[int]:
    """Runs `app` on 127.0.0.1:<ephemeral>; yields the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@dataclass
class FakeBackend:
    """A downstream that answers every GET with `status` and `body`, and records what it was sent."""

    status: int = 200
    body: Any = field(default_factory=dict)
    calls: list[tuple[str, CIMultiDict[str]]] = field(default_factory=list)

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            self.calls.append((request.path_qs, CIMultiDict(request.headers)))
            return web.Response(status=self.status, text=json.dumps(self.body), content_type="application/json")

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        return app


def bookinfo_app(service: str, **env: str) -> web.Application:
    return SERVICES[service](settings_from_env(env))
