"""OTLP/HTTP trace ingest (`POST /v1/traces`), answering as the OTLP specification says.

Success is a 200 carrying an ExportTraceServiceResponse in the request's encoding; a payload
that does not decode (JSON nested too deeply included) is rejected whole with a 400 carrying a
google.rpc.Status whose message says what is wrong, a body over the size cap gets a 413
(request_body); an unsupported Content-Type gets a 415.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from aiohttp import web

from tracemesh_collector.request_body import BodyRefused, read_spans, refusal, refuse_oversized_expectation
from tracemesh_collector.store import SpanStore
from tracemesh_sidecar.spans import otlp
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.spans.otlp_writer import varint

PROTOBUF, JSON = "application/x-protobuf", "application/json"
DECODERS: Mapping[str, Callable[[bytes], list[Span]]] = {
    PROTOBUF: otlp.decode_request_proto,
    JSON: otlp.decode_request_json,
}
_INVALID_ARGUMENT = 3  # google.rpc.Code


class OtlpApi:
    def __init__(self, store: SpanStore) -> None:
        self.store = store

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/traces", self.post_traces, expect_handler=refuse_oversized_expectation)]

    async def post_traces(self, request: web.Request) -> web.Response:
        media_type = request.content_type
        decode = DECODERS.get(media_type)
        if decode is None:
            return _status(415, JSON, f"Content-Type {media_type!r} is not supported: send {PROTOBUF} or {JSON}")
        try:
            spans = await read_spans(request, decode, "malformed ExportTraceServiceRequest, no span stored")
        except BodyRefused as refused:
            return refusal(refused, _status(refused.status, media_type, refused.message))
        self.store.add(spans)
        # an empty ExportTraceServiceResponse: no partial_success, everything was accepted
        return web.Response(status=200, body=b"" if media_type == PROTOBUF else b"{}", content_type=media_type)


def _status(http_status: int, media_type: str, message: str) -> web.Response:
    if media_type == PROTOBUF:
        body = encode_rpc_status(_INVALID_ARGUMENT, message)
    else:
        body = json.dumps({"code": _INVALID_ARGUMENT, "message": message}).encode()
    return web.Response(status=http_status, body=body, content_type=media_type)


def encode_rpc_status(code: int, message: str) -> bytes:
    """google.rpc.Status{code, message} in protobuf wire format.

    Written by hand because the message has two scalar fields and the generated class lives in
    googleapis-common-protos, a package tracemesh would otherwise not need.
    """
    text = message.encode()
    return b"\x08" + varint(code) + b"\x12" + varint(len(text)) + text
