"""`python -m bench.pgo_training`: the load whose counts optimize the compiled build (setup.py, TRACEMESH_PGO).

Run between a `TRACEMESH_PGO=generate` build and a `TRACEMESH_PGO=use` one, on the interpreter that built them:
a sidecar pair proxies HTTP/1.1 requests with 1 KB bodies to an origin, traced at 100% sampling, and exports
the spans to the embedded collector, once per exporter (Zipkin JSON, OTLP/HTTP, OTLP/gRPC), so that the
request path, the span codecs and the collector's ingest all run. Every process stops with SIGTERM and exits
normally, which is when gcc's instrumented code writes its counts. Hermetic: loopback only, no nginx, no wrk
(the image's build stage has neither). Exits non-zero if a request failed or no span was exported: a build that
does not work must not be what the profile describes (and a build machine too busy to keep the rate is no failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httptools

from bench.loadgen import ParsedConnection, run_fixed_rate
from bench.processes import free_port, started, wait_for_port
from bench.proxy import BACKEND, TRACEMESH, request_bytes, sidecar_configs, spans_sent
from tracemesh_sidecar import BUILD
from tracemesh_sidecar.config import ProviderConfig
from tracemesh_sidecar.config.model import Transport

RATE = 1500  # requests per second: well under what the pair sustains, so none queue or fail
SECONDS = 3
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1024\r\n\r\n" + b"x" * 1024


class _Origin(ParsedConnection):
    """The app behind the server sidecar: a 1 KB answer to every request, on a kept-alive connection."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        self.transport.write(RESPONSE)


@contextlib.contextmanager
def _collector() -> Iterator[dict[str, int]]:
    """The embedded collector as every exporter's sink: its ports by protocol."""
    ports = {name: free_port() for name in ("zipkin", "otlp_http", "otlp_grpc", "query")}
    argv = [*TRACEMESH, "collector", "--zipkin-port", str(ports["zipkin"]), "--otlp-port", str(ports["otlp_http"]),
            "--otlp-grpc-port", str(ports["otlp_grpc"]), "--query-port", str(ports["query"])]
    with started("collector", argv, ports["otlp_grpc"]):
        yield ports


def _providers(ports: dict[str, int]) -> list[ProviderConfig]:
    otel: list[tuple[Transport, int, str]] = [("http", ports["otlp_http"], "/v1/traces"),
                                              ("grpc", ports["otlp_grpc"], "")]
    return [ProviderConfig(name="zipkin", kind="zipkin", service="127.0.0.1", port=ports["zipkin"],
                           path="/api/v2/spans"),
            *(ProviderConfig(name="otel", kind="opentelemetry", service="127.0.0.1", port=port, path=path,
                             transport=transport) for transport, port, path in otel)]


def _train(tmp: Path, origin_port: int, provider: ProviderConfig) -> str | None:
    """One pair under load, exporting to `provider`; what went wrong, or None."""
    client_conf, server_conf, client_port, server_port, client_admin = sidecar_configs(tmp, origin_port, provider)
    proxy = [*TRACEMESH, "proxy", "--config"]
    with started("server sidecar", [*proxy, str(server_conf)], server_port), \
            started("client sidecar", [*proxy, str(client_conf)], client_port):
        request = request_bytes(f"http://{BACKEND}:9080/", f"{BACKEND}:9080")
        result = asyncio.run(run_fixed_rate("127.0.0.1", client_port, request, RATE, SECONDS))
        sent = spans_sent(client_admin)
    print(f"{provider.name} ({provider.transport}): {result.completed} of {result.sent} requests, "
          f"{result.errors} errors; client sidecar: {sent}", flush=True)
    if result.errors or not result.completed:  # slow is no failure (a busy build machine); an error is
        return f"{result.errors} errors, {result.completed} of {result.sent} requests completed"
    if not any(int(count) for count in re.findall(r"spans_sent: (\d+)", sent)):
        return f"no span exported ({sent})"
    return None


async def _serve_origin(port: int, stop: asyncio.Event) -> None:
    server = await asyncio.get_running_loop().create_server(_Origin, "127.0.0.1", port)
    async with server:
        await stop.wait()


@contextlib.contextmanager
def _origin_thread(port: int) -> Iterator[None]:
    """The origin on an event loop in a thread of its own, beside the load generator's."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(_serve_origin(port, stop),), daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=5)
        loop.close()


def main(argv: list[str]) -> int:
    if not BUILD.compiled:
        print(f"PGO training skipped: nothing compiled to train ({BUILD.describe()})", flush=True)
        return 0
    print(f"PGO training on the sidecar build: {BUILD.describe()}", flush=True)
    failures = []
    with tempfile.TemporaryDirectory(prefix="tracemesh-pgo-") as name, _collector() as ports:
        origin_port = free_port()
        with _origin_thread(origin_port):
            for provider in _providers(ports):
                failure = _train(Path(name), origin_port, provider)
                if failure:
                    failures.append(f"{provider.name} ({provider.transport}): {failure}")
    for failure in failures:
        print(f"PGO training failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
