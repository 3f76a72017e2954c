"""One collector process: Zipkin ingest and query, OTLP/HTTP and OTLP/gRPC ingest and the Jaeger query API,
each on its port.

Each API keeps the port the real backend uses (9411, 4318, 4317, 16686), so clients and UIs need no
tracemesh-specific settings. `run_collector` is the one way to start it, for the CLI, the demo
and tests (port 0 binds an ephemeral port; the bound ports are on the yielded object).
"""

from __future__ import annotations

import errno
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware
from grpc import aio

from tracemesh_collector import jaeger_api, zipkin_api
from tracemesh_collector.index_page import render_index
from tracemesh_collector.jaeger_api import JaegerApi
from tracemesh_collector.otlp_api import OtlpApi
from tracemesh_collector.otlp_grpc import grpc_server
from tracemesh_collector.request_body import MAX_BODY_BYTES
from tracemesh_collector.store import DEFAULT_MAX_SPANS, SpanStore
from tracemesh_collector.ui.routes import ui_routes
from tracemesh_collector.zipkin_api import Clock, ZipkinApi

ZIPKIN_PORT, OTLP_PORT, OTLP_GRPC_PORT, QUERY_PORT = 9411, 4318, 4317, 16686


class ListenError(OSError):
    """A port could not be bound; the message names the API, the address and the option to change."""


@dataclass
class RunningCollector:
    store: SpanStore
    host: str
    zipkin_port: int = 0
    otlp_port: int = 0
    query_port: int = 0
    otlp_grpc_port: int = 0
    otlp_grpc_auth_port: int | None = None  # the bearer-token OTLP/gRPC receiver, when one runs

    @property
    def zipkin_url(self) -> str:
        return self._url(self.zipkin_port)

    @property
    def otlp_url(self) -> str:
        return self._url(self.otlp_port)

    @property
    def query_url(self) -> str:
        """Where the Jaeger query API answers."""
        return self._url(self.query_port)

    @property
    def otlp_grpc_target(self) -> str:
        """host:port of OTLP/gRPC ingest, as a gRPC client's target."""
        return self._address(self.otlp_grpc_port)

    @property
    def otlp_grpc_auth_target(self) -> str | None:
        """host:port of the bearer-token OTLP/gRPC receiver, or None when none runs."""
        return None if self.otlp_grpc_auth_port is None else self._address(self.otlp_grpc_auth_port)

    def _url(self, port: int) -> str:
        return f"http://{self._address(port)}"

    def _address(self, port: int) -> str:
        # a wildcard bind is reachable on loopback; that is the address to hand a local client
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@asynccontextmanager
async def run_collector(
    host: str = "127.0.0.1",
    zipkin_port: int = ZIPKIN_PORT,
    otlp_port: int = OTLP_PORT,
    query_port: int = QUERY_PORT,
    max_spans: int = DEFAULT_MAX_SPANS,
    clock: Clock = time.time,
    otlp_grpc_port: int = OTLP_GRPC_PORT,
    otlp_grpc_auth: tuple[int, str] | None = None,
    store: SpanStore | None = None,
) -> AsyncIterator[RunningCollector]:
    """Serve the four APIs over one store until the block exits; `otlp_grpc_auth` (port, bearer token) adds a
    second OTLP/gRPC receiver that takes only calls carrying that token; `store` (e.g. one kept on disk)
    replaces the in-memory store of `max_spans`."""
    collector = RunningCollector(store=store or SpanStore(max_spans), host=host)
    zipkin_routes = ZipkinApi(collector.store, clock).routes()
    zipkin_queries = [route for route in zipkin_routes if route.method == "GET"]
    # zipkin-server answers its query API under the UI's base path too (/zipkin/api/v2/...), where the UI calls it
    zipkin_ui_queries = [web.get("/zipkin" + route.path, route.handler) for route in zipkin_queries]
    zipkin = _app([*zipkin_routes, *zipkin_ui_queries, zipkin_api.UI_CONFIG_ROUTE, *ui_routes("/zipkin/")],
                  [zipkin_api.bad_parameter_as_400], collector)
    otlp = _app(OtlpApi(collector.store).routes(), [], collector)
    # Jaeger's port: its UI root is the trace UI, which reads Zipkin's v2 query API served beside Jaeger's
    query = _app([*JaegerApi(collector.store, clock).routes(), *zipkin_queries, *ui_routes("/")],
                 [jaeger_api.bad_parameter_as_400], collector)
    async with AsyncExitStack() as stack:
        collector.zipkin_port = await _serve(stack, zipkin, host, zipkin_port, "Zipkin API", "--zipkin-port")
        collector.otlp_port = await _serve(stack, otlp, host, otlp_port, "OTLP/HTTP", "--otlp-port")
        collector.query_port = await _serve(stack, query, host, query_port, "Jaeger query API", "--query-port")
        collector.otlp_grpc_port = await _serve_grpc(stack, grpc_server(collector.store), host, otlp_grpc_port,
                                                     "--otlp-grpc-port")
        if otlp_grpc_auth is not None:
            auth_port, token = otlp_grpc_auth
            collector.otlp_grpc_auth_port = await _serve_grpc(stack, grpc_server(collector.store, token), host,
                                                              auth_port, "--otlp-grpc-auth-port")
        yield collector


def _app(routes: Sequence[web.RouteDef], middlewares: Sequence[Middleware],
         collector: RunningCollector) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=middlewares)
    app.add_routes(routes)

    async def health(request: web.Request) -> web.Response:
        store = collector.store
        return web.json_response({"status": "UP", "spans": store.span_count, "traces": store.trace_count,
                                  "maxSpans": store.max_spans, "bytes": store.byte_count,
                                  "maxBytes": store.max_bytes})

    async def index(request: web.Request) -> web.Response:
        store = collector.store
        page = render_index(collector.zipkin_url, collector.otlp_url, collector.query_url, store.span_count,
                            store.max_spans, collector.otlp_grpc_target)
        return web.Response(text=page, content_type="text/html")

    app.add_routes([web.get("/health", health)])
    if not any(route.method == "GET" and route.path == "/" for route in routes):
        app.add_routes([web.get("/", index)])  # where no UI sits at the root
    return app


async def _serve(stack: AsyncExitStack, app: web.Application, host: str, port: int, what: str, option: str) -> int:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:
        raise ListenError(error.errno, f"cannot listen on {host}:{port} for the {what}: {error.strerror}; "
                                       f"choose another port with {option} (0 picks a free one)") from None
    address = runner.addresses[0]
    return int(address[1])


async def _serve_grpc(stack: AsyncExitStack, server: aio.Server, host: str, port: int, option: str) -> int:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:  # grpcio's "failed to bind": it does not say why, the OS error is the likely one
        bound = 0
    if not bound:
        raise ListenError(errno.EADDRINUSE, f"cannot listen on {address} for OTLP/gRPC: the address is in use or "
                                            f"not local; choose another port with {option} (0 picks a free one)")
    await server.start()
    stack.push_async_callback(server.stop, 0.5)
    return bound
