"""A collector stand-in on 127.0.0.1 (ephemeral port) that can be healthy, down, slow or failing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

from aiohttp import web

from tracemesh_sidecar.config.model import BatchConfig, ProviderConfig, ProviderKind
from tracemesh_sidecar.spans import otlp, zipkin_json
from tracemesh_sidecar.spans.model import Endpoint, Span

SLOW = -1  # a behaviour: answer only after SLOW_SECONDS, or at recover()
SLOW_SECONDS = 10.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def spans(self) -> list[Span]:
        if self.headers.get("Content-Type") == "application/json":
            return zipkin_json.decode_spans(self.body)
        return otlp.decode_request_proto(self.body)


@dataclass
class CollectorDouble:
    """Answers each POST with the next status in `script` (SLOW: wait 10 s), then with `status`."""

    status: int = 202
    script: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _recovered: asyncio.Event = field(default_factory=asyncio.Event)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(request.path, dict(request.headers), body, time.monotonic()))
        status = self.script.pop(0) if self.script else self.status
        if status == SLOW:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recovered.wait(), SLOW_SECONDS)
            status = 202
        headers = {"Retry-After": "0"} if status == 429 else {}
        text = f"status {status}: this collector says no" if status >= 400 else ""
        return web.Response(status=status, text=text, headers=headers)

    async def start(self) -> None:
        """Listens on an ephemeral port the first time, on the same port after a stop()."""
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def recover(self) -> None:
        """Healthy again: 202 from now on, and at once to the requests a slow collector still holds."""
        self.status = 202
        self._recovered.set()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def spans(self) -> list[Span]:
        return [span for request in self.received for span in request.spans()]

    def provider(self, kind: ProviderKind = "zipkin", name: str = "zipkin", **batch: float) -> ProviderConfig:
        return ProviderConfig(
            name=name, kind=kind, service="127.0.0.1", port=self.port,
            path="/api/v2/spans" if kind == "zipkin" else "/v1/traces",
            connect_timeout_s=0.5, timeout_s=0.5, headers=(("x-tenant", "team-a"),),
            batch=replace(BatchConfig(max_spans=10, flush_interval_s=0.05, queue_size=100, max_retries=2), **batch),
        )


@asynccontextmanager
async def running_collector(status: int = 202, script: list[int] | None = None
                            ) -> AsyncIterator[CollectorDouble]:
    collector = CollectorDouble(status=status, script=script or [])
    await collector.start()
    try:
        yield collector
    finally:
        await collector.stop()


def make_span(number: int, service: str = "productpage.default") -> Span:
    return Span(trace_id=f"4e441824ec2b6a44{number + 1:016x}", id=f"{number + 1:016x}", name="reviews:9080/*",
                kind="CLIENT",
                timestamp=1_763_700_000_000_000 + number, duration=1000,
                local_endpoint=Endpoint(service_name=service, ipv4="10.0.0.1"),
                tags={"http.status_code": "200"})


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Polls `condition()` every 10 ms until true; fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.01)
