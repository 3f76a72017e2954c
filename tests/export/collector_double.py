"""Collector stand-ins on 127.0.0.1 (ephemeral port) that can be healthy, down, slow or failing: one over HTTP
(aiohttp), one over OTLP/gRPC (a real grpcio server).

Both are scripted in HTTP statuses; the gRPC one answers each as an OTLP/gRPC collector would mean it:
202 -> OK, 500 -> UNAVAILABLE, 429 -> RESOURCE_EXHAUSTED with a RetryInfo of 0 s, 413 -> RESOURCE_EXHAUSTED
without one, 400 -> INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import grpc
from aiohttp import web
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, duration_pb2, message_factory
from grpc import aio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tracemesh_sidecar.config.model import BatchConfig, ProviderConfig, ProviderKind
from tracemesh_sidecar.spans import otlp, zipkin_json
from tracemesh_sidecar.spans.model import Endpoint, Span

Transport = Literal["http", "grpc"]
EXPORT_SERVICE, EXPORT_METHOD = "opentelemetry.proto.collector.trace.v1.TraceService", "Export"

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
    """Answers each POST with the next status in `script` (SLOW: wait 10 s), then with `status`.

    `rejected`: an accepted OTLP export answers with a partial success rejecting that many spans.
    """

    status: int = 202
    script: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    port: int = 0
    rejected: int = 0
    transport: Transport = "http"
    refusal: str = "HTTP 400"  # how the exporter's log line names a refused export
    answer_delay_s: float = 0.0  # a distant collector: every answer this long after the request
    _runner: web.AppRunner | None = None
    _recovered: asyncio.Event = field(default_factory=asyncio.Event)

    async def _next_status(self) -> int:
        await asyncio.sleep(self.answer_delay_s)
        status = self.script.pop(0) if self.script else self.status
        if status == SLOW:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recovered.wait(), SLOW_SECONDS)
            status = 202
        return status

    def _accepted_answer(self) -> bytes:
        if not self.rejected:
            return b""
        response = ExportTraceServiceResponse()
        response.partial_success.rejected_spans = self.rejected
        response.partial_success.error_message = "spans too old"
        return response.SerializeToString()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(request.path, dict(request.headers), body, time.monotonic()))
        status = await self._next_status()
        headers = {"Retry-After": "0"} if status == 429 else {}
        if status < 400:
            return web.Response(status=status, body=self._accepted_answer(), headers=headers)
        return web.Response(status=status, text=refusal_text(status), headers=headers)

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
        return test_provider(self.port, kind, name, "http", **batch)


def test_provider(port: int, kind: ProviderKind, name: str, transport: Transport, **batch: float) -> ProviderConfig:
    """A provider with short timeouts (0.5 s), small batches and queue, and a header (or gRPC metadata)."""
    return ProviderConfig(
        name=name, kind=kind, service="127.0.0.1", port=port,
        path="" if transport == "grpc" else "/api/v2/spans" if kind == "zipkin" else "/v1/traces",
        connect_timeout_s=0.5, timeout_s=0.5, headers=(("x-tenant", "team-a"),), transport=transport,
        batch=replace(BatchConfig(max_spans=10, flush_interval_s=0.05, queue_size=100, max_retries=2), **batch),
    )


test_provider.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def refusal_text(status: int) -> str:
    return f"status {status}: this collector says no"


class GrpcCollectorDouble(CollectorDouble):
    """The same script served as OTLP/gRPC by grpcio's aio server; `received[].headers` is the call's metadata."""

    def __init__(self, status: int = 202, script: list[int] | None = None, port: int = 0) -> None:
        super().__init__(status=status, script=script or [], port=port, transport="grpc",
                         refusal="gRPC INVALID_ARGUMENT")
        self._server: aio.Server | None = None
        self.time_remaining: list[float | None] = []  # the deadline each call arrived with (grpc-timeout)

    async def _export(self, request: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
        self.received.append(Received(f"/{EXPORT_SERVICE}/{EXPORT_METHOD}", dict(context.invocation_metadata() or ()),
                                      request, time.monotonic()))
        self.time_remaining.append(context.time_remaining())
        status = await self._next_status()
        if status == 429:
            context.set_trailing_metadata((("grpc-status-details-bin", retry_info_status(0.0)),))
        if status >= 400:
            await context.abort(GRPC_CODES[status], refusal_text(status))
        return self._accepted_answer()

    async def start(self) -> None:
        self._server = aio.server(options=[("grpc.so_reuseport", 0)])
        handler = grpc.unary_unary_rpc_method_handler(self._export)
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            EXPORT_SERVICE, {EXPORT_METHOD: handler}),))
        self.port = self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None

    def provider(self, kind: ProviderKind = "opentelemetry", name: str = "zipkin", **batch: float) -> ProviderConfig:
        return test_provider(self.port, kind, name, "grpc", **batch)


# 413 (too large): RESOURCE_EXHAUSTED without a RetryInfo, which the OTLP specification does not retry.
GRPC_CODES = {500: grpc.StatusCode.UNAVAILABLE, 429: grpc.StatusCode.RESOURCE_EXHAUSTED,
              413: grpc.StatusCode.RESOURCE_EXHAUSTED, 400: grpc.StatusCode.INVALID_ARGUMENT}


def _rpc_classes() -> tuple[type[Any], type[Any]]:
    """google.rpc.Status and google.rpc.RetryInfo from their definitions (independent of the sidecar's reader)."""
    file = descriptor_pb2.FileDescriptorProto(name="test_google_rpc.proto", package="test.google.rpc", syntax="proto3",
                                              dependency=["google/protobuf/any.proto",
                                                          "google/protobuf/duration.proto"])
    field_proto = descriptor_pb2.FieldDescriptorProto
    optional, repeated = field_proto.LABEL_OPTIONAL, field_proto.LABEL_REPEATED
    status = file.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32, label=optional)
    status.field.add(name="message", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=optional)
    status.field.add(name="details", number=3, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE, label=repeated,
                     type_name=".google.protobuf.Any")
    retry_info = file.message_type.add(name="RetryInfo")
    retry_info.field.add(name="retry_delay", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                         label=optional, type_name=".google.protobuf.Duration")
    pool = descriptor_pool.DescriptorPool()
    for dependency in (any_pb2, duration_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        dependency.DESCRIPTOR.CopyToProto(proto)
        pool.Add(proto)
    pool.Add(file)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("test.google.rpc.Status")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("test.google.rpc.RetryInfo")))


def retry_info_status(delay_s: float, code: int = 8) -> bytes:
    """A google.rpc.Status (default RESOURCE_EXHAUSTED) carrying a RetryInfo of `delay_s`, serialized."""
    status_class, retry_info_class = _rpc_classes()
    retry_info = retry_info_class()
    retry_info.retry_delay.seconds = int(delay_s)
    retry_info.retry_delay.nanos = round((delay_s - int(delay_s)) * 1e9)
    status = status_class(code=code, message="throttled")
    detail = status.details.add()
    detail.type_url = "type.googleapis.com/google.rpc.RetryInfo"
    detail.value = retry_info.SerializeToString()
    result: bytes = status.SerializeToString()
    return result


DOUBLES: dict[Transport, type[CollectorDouble]] = {"http": CollectorDouble, "grpc": GrpcCollectorDouble}


@asynccontextmanager
async def running_collector(status: int = 202, script: list[int] | None = None, transport: Transport = "http"
                            ) -> AsyncIterator[CollectorDouble]:
    collector = DOUBLES[transport](status=status, script=script or [])
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
