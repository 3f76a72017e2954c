"""Test helpers for the proxy: configs, a span-capturing exporter set, raw HTTP clients and origins.

Everything binds 127.0.0.1 port 0; nothing here sleeps without a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from tracemesh_sidecar.config.model import (
    InboundConfig,
    InboundPort,
    Listeners,
    NodeIdentity,
    OutboundConfig,
    ProviderConfig,
    ProxyConfig,
    ServiceEntry,
    TracingConfig,
    TracingPolicy,
)
from tracemesh_sidecar.proxy import Runtime
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.stats import Stats

TRACED = TracingPolicy(provider="zipkin", sampling_percentage=100.0)
ZIPKIN = ProviderConfig(name="zipkin", kind="zipkin", service="127.0.0.1", port=9, path="/api/v2/spans")


@dataclass
class Origin:
    """What the `origin` fixture's aiohttp app (the application behind the server sidecar) has seen."""

    port: int
    peers: set[tuple[str, int]] = field(default_factory=set)  # one per upstream connection used
    requests: list[dict[str, object]] = field(default_factory=list)


class CapturingExporters:
    """Stands in for ExporterSet: keeps every submitted span."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Span]] = []
        self.providers: list[Sequence[ProviderConfig]] = []

    def apply(self, providers: Sequence[ProviderConfig]) -> None:
        self.providers.append(providers)

    def submit(self, provider_name: str, span: Span) -> None:
        self.spans.append((provider_name, span))

    async def close(self, timeout_s: float = 2.0) -> None:
        return None

    async def wait_spans(self, count: int, timeout_s: float = 5.0) -> list[Span]:
        async with asyncio.timeout(timeout_s):
            while len(self.spans) < count:
                await asyncio.sleep(0.01)
        return [span for _, span in self.spans]


def server_config(app_port: int, **changes: object) -> ProxyConfig:
    """A server-side sidecar: an explicit inbound listener for service port 9080 in front of `app_port`."""
    config = ProxyConfig(
        version="1",
        node=NodeIdentity(pod_name="reviews-v1-abc", namespace="default", pod_ip="127.0.0.1",
                          canonical_service="reviews", canonical_revision="v1"),
        listeners=Listeners(outbound=None, inbound=None, admin="127.0.0.1:0", health="127.0.0.1:0",
                            prometheus="127.0.0.1:0"),
        inbound=InboundConfig(ports=(InboundPort(port=9080, app_port=app_port, listen="127.0.0.1:0"),)),
        tracing=TracingConfig(client=TRACED, server=TRACED),
        providers=(ZIPKIN,),
    )
    return replace(config, **changes)  # type: ignore[arg-type]


def client_config(endpoints: Sequence[str], **changes: object) -> ProxyConfig:
    """A client-side sidecar: an outbound listener that knows `reviews:9080` at `endpoints`."""
    config = ProxyConfig(
        version="1",
        node=NodeIdentity(pod_name="productpage-v1-xyz", namespace="default", pod_ip="127.0.0.1",
                          canonical_service="productpage", canonical_revision="v1"),
        listeners=Listeners(outbound="127.0.0.1:0", inbound=None, admin="127.0.0.1:0", health="127.0.0.1:0",
                            prometheus=None),
        outbound=OutboundConfig(services=(
            ServiceEntry(host="reviews.default.svc.cluster.local", port=9080, endpoints=tuple(endpoints)),
        )),
        tracing=TracingConfig(client=TRACED, server=TRACED),
        providers=(ZIPKIN,),
    )
    return replace(config, **changes)  # type: ignore[arg-type]


@dataclass
class Sidecar:
    runtime: Runtime
    stats: Stats
    exporters: CapturingExporters

    @property
    def outbound_port(self) -> int:
        return self.runtime.listener_port("outbound")

    @property
    def inbound_port(self) -> int:
        return self.runtime.listener_port("inbound-port", 9080)

    def admin_port(self, role: str = "admin") -> int:
        return self.runtime.admin.bound_port(role)


@contextlib.asynccontextmanager
async def sidecar(config: ProxyConfig) -> AsyncIterator[Sidecar]:
    stats = Stats()
    exporters = CapturingExporters()
    runtime = Runtime(stats, exporters)
    await runtime.apply(config)
    try:
        yield Sidecar(runtime, stats, exporters)
    finally:
        await runtime.close(drain_timeout_s=0.5)


@contextlib.asynccontextmanager
async def pair(app_port: int) -> AsyncIterator[tuple[Sidecar, Sidecar]]:
    """(client sidecar, server sidecar) in front of an app on `app_port`."""
    async with sidecar(server_config(app_port)) as server_side, \
            sidecar(client_config([f"127.0.0.1:{server_side.inbound_port}"])) as client_side:
        yield client_side, server_side


# ------------------------------------------------------------------ raw HTTP on sockets


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    head: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


async def read_response(reader: asyncio.StreamReader, method: str = "GET") -> Response:
    """One response from `reader` (Content-Length, chunked, or to EOF); interim 1xx responses are skipped."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = [(line.split(":", 1)[0], line.split(":", 1)[1].strip()) for line in lines[1:] if ":" in line]
        if 100 <= status < 200 and status != 101:
            continue
        break
    response = Response(status, headers, b"", head)
    if method == "HEAD" or status in (204, 304, 101):
        return response
    length = response.header("content-length")
    if response.header("transfer-encoding") == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        response.body = b"".join(chunks)
    elif length is not None:
        response.body = await reader.readexactly(int(length))
    else:
        response.body = await reader.read()
    return response


async def request(port: int, raw: bytes, method: str = "GET", timeout_s: float = 5.0) -> Response:
    """Send `raw` on a new connection to 127.0.0.1:`port` and read one response."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(raw)
            return await read_response(reader, method)
        finally:
            writer.close()


async def pipelined(port: int, raw: bytes, count: int, timeout_s: float = 5.0) -> list[Response]:
    """Send `raw` (requests back to back) on a new connection to 127.0.0.1:`port` and read `count` responses."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(raw)
            return [await read_response(reader) for _ in range(count)]
        finally:
            writer.close()


@dataclass
class RawOrigin:
    """An origin server whose every connection is handled by `handler(reader, writer)`."""

    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    connections: int = 0
    server: asyncio.Server | None = None
    requests: list[bytes] = field(default_factory=list)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> RawOrigin:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)
