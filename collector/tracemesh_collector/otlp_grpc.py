"""OTLP/gRPC trace ingest (`TraceService/Export` on :4317, as Jaeger and the OpenTelemetry Collector serve it).

Served by grpcio's aio server rather than the sidecar's own h2 client code turned around: the collector
is one process, not one per pod, so grpcio's few megabytes do not matter, and it is a complete gRPC peer
(gzip-compressed messages as OTLP exporters may send them, keepalive, flow control, many concurrent
callers) that also checks the sidecar's client against a real implementation. Messages are decoded by
the same code as OTLP/HTTP into the same store; a message that does not decode is rejected whole with
INVALID_ARGUMENT naming the field, as the HTTP side answers 400.
"""

from __future__ import annotations

import grpc
from grpc import aio

from tracemesh_collector.request_body import MAX_BODY_BYTES
from tracemesh_collector.store import SpanStore
from tracemesh_sidecar.export.grpc_wire import EXPORT_PATH
from tracemesh_sidecar.spans import otlp
from tracemesh_sidecar.spans.errors import SpanDecodeError

SERVICE, METHOD = EXPORT_PATH.strip("/").split("/")
MAX_MESSAGE_BYTES = MAX_BODY_BYTES  # the HTTP side's cap; grpcio's default (4 MB) would refuse big batches


class OtlpGrpcService:
    """`bearer_token`: calls must carry `authorization: Bearer <token>` or are refused UNAUTHENTICATED, as the
    OpenTelemetry Collector's `bearertokenauth` extension refuses them (Istio's samples/open-telemetry/otel.yaml
    puts one such receiver on 5317 for its otelcollector integration test)."""

    def __init__(self, store: SpanStore, bearer_token: str | None = None) -> None:
        self.store = store
        self._authorization = None if bearer_token is None else f"Bearer {bearer_token}"

    async def export(self, request: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
        if self._authorization is not None and not self._authorized(context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or wrong authorization metadata: send 'authorization: Bearer <token>'")
        try:
            spans = otlp.decode_request_proto(request)
        except SpanDecodeError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"malformed ExportTraceServiceRequest, no span stored: {error}")
        self.store.add(spans)
        return b""  # an empty ExportTraceServiceResponse: no partial_success, everything was accepted

    def _authorized(self, context: aio.ServicerContext[bytes, bytes]) -> bool:
        # grpcio hands metadata keys lowercased, as HTTP/2 carries them.
        return any(key == "authorization" and value == self._authorization
                   for key, value in context.invocation_metadata() or ())

    def handler(self) -> grpc.GenericRpcHandler:
        # No (de)serializers: the request arrives as bytes for the shared decoder, which names a bad field.
        return grpc.method_handlers_generic_handler(SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(self.export)})


def grpc_server(store: SpanStore, bearer_token: str | None = None) -> aio.Server:
    """An unstarted server with the Export service (behind a bearer token when one is given); the caller binds
    its port."""
    server = aio.server(options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # grpcio sets SO_REUSEPORT by default, which would let a second collector share :4317 silently.
        ("grpc.so_reuseport", 0),
    ])
    server.add_generic_rpc_handlers((OtlpGrpcService(store, bearer_token).handler(),))
    return server
