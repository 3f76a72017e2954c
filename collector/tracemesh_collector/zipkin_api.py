"""Zipkin's v2 HTTP API over the span store: `POST /api/v2/spans` and the query endpoints Zipkin's UI and clients use.

Behaviour follows the official API (zipkin2-api.yaml) and Zipkin's server: ingest answers 202,
a payload that fails to decode is rejected whole with a 400 saying what is wrong (nothing of it
is stored), an unknown media type gets a 415; bad query parameters get a 400 naming the
parameter. gzip request bodies are inflated by aiohttp before they reach the handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from tracemesh_collector import params
from tracemesh_collector.params import ParameterError
from tracemesh_collector.query import DEFAULT_LIMIT, DEFAULT_LOOKBACK_US, TraceQuery, parse_annotation_query
from tracemesh_collector.request_body import read_body
from tracemesh_collector.store import SpanStore
from tracemesh_sidecar.spans import zipkin_json, zipkin_proto
from tracemesh_sidecar.spans.errors import SpanDecodeError
from tracemesh_sidecar.spans.model import Span

Clock = Callable[[], float]  # seconds since the epoch, like time.time
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DECODERS: Mapping[str, Callable[[bytes], list[Span]]] = {
    "application/json": zipkin_json.decode_spans,
    "application/x-protobuf": zipkin_proto.decode_spans,
}


class ZipkinApi:
    def __init__(self, store: SpanStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/v2/spans", self.post_spans),
            web.get("/api/v2/services", self.services),
            web.get("/api/v2/spans", self.span_names),
            web.get("/api/v2/remoteServices", self.remote_services),
            web.get("/api/v2/traces", self.traces),
            web.get("/api/v2/trace/{traceId}", self.trace),
            web.get("/api/v2/traceMany", self.trace_many),
            web.get("/api/v2/dependencies", self.dependencies),
            web.get("/api/v2/autocompleteKeys", self.autocomplete_keys),
            web.get("/api/v2/autocompleteValues", self.autocomplete_values),
        ]

    async def post_spans(self, request: web.Request) -> web.Response:
        decode = DECODERS.get(request.content_type)
        if decode is None:
            return web.Response(status=415, text=f"Content-Type {request.content_type!r} is not supported: send "
                                                 "application/json (Zipkin v2 JSON) or application/x-protobuf (proto3)")
        try:
            spans = decode(await read_body(request))
        except SpanDecodeError as error:
            return web.Response(status=400, text=f"malformed spans, none stored: {error}")
        self.store.add(spans)
        return web.Response(status=202)

    async def services(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.services())

    async def span_names(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.span_names(_service(request)))

    async def remote_services(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.remote_services(_service(request)))

    async def traces(self, request: web.Request) -> web.Response:
        query = self._trace_query(request.query)
        return _traces_response(self.store.find_traces(query))

    async def trace(self, request: web.Request) -> web.Response:
        spans = self.store.get_trace(params.trace_id(request.match_info["traceId"]))
        if not spans:
            return web.Response(status=404, text=f"trace {request.match_info['traceId']} not found")
        return web.json_response([zipkin_json.span_to_zipkin_dict(span) for span in spans])

    async def trace_many(self, request: web.Request) -> web.Response:
        raw = params.required_text(request.query, "traceIds", "a comma-separated list of trace ids")
        ids = [params.trace_id(item, "traceIds") for item in raw.split(",")]
        if len(set(ids)) < 2 or len(set(ids)) != len(ids):
            raise ParameterError("traceIds", "needs at least two different trace ids, without repeats "
                                             "(use /api/v2/trace/{traceId} for one)")
        return _traces_response(self.store.get_traces(ids))

    async def dependencies(self, request: web.Request) -> web.Response:
        end_ms = params.integer(request.query, "endTs", positive=True, what="epoch milliseconds")
        if end_ms is None:
            raise ParameterError("endTs", "is required: the end of the window in epoch milliseconds")
        lookback_ms = params.integer(request.query, "lookback", positive=True, what="milliseconds")
        lookback_us = lookback_ms * 1000 if lookback_ms else DEFAULT_LOOKBACK_US
        links = self.store.dependencies(end_ms * 1000, lookback_us)
        return web.json_response([
            {"parent": link.parent, "child": link.child, "callCount": link.call_count, "errorCount": link.error_count}
            for link in links
        ])

    async def autocomplete_keys(self, request: web.Request) -> web.Response:
        """No tag keys are configured for autocompletion (Zipkin's default), so the UI offers none."""
        return web.json_response([])

    async def autocomplete_values(self, request: web.Request) -> web.Response:
        params.required_text(request.query, "key", "a key from /api/v2/autocompleteKeys")
        return web.json_response([])

    def _trace_query(self, query: Mapping[str, str]) -> TraceQuery:
        end_ms = params.integer(query, "endTs", positive=True, what="epoch milliseconds")
        lookback_ms = params.integer(query, "lookback", positive=True, what="milliseconds")
        min_duration = params.integer(query, "minDuration", positive=True, what="microseconds")
        max_duration = params.integer(query, "maxDuration", positive=True, what="microseconds")
        if max_duration is not None and min_duration is None:
            raise ParameterError("maxDuration", "is only valid with minDuration: add minDuration (microseconds)")
        if max_duration is not None and min_duration is not None and max_duration < min_duration:
            raise ParameterError("maxDuration", f"must be at least minDuration ({min_duration}), got {max_duration}")
        span_name = params.text(query, "spanName")
        return TraceQuery(
            end_us=(end_ms or int(self.clock() * 1000)) * 1000,
            lookback_us=lookback_ms * 1000 if lookback_ms else DEFAULT_LOOKBACK_US,
            service_name=params.text(query, "serviceName"),
            remote_service_name=params.text(query, "remoteServiceName"),
            span_name=None if span_name == "all" else span_name,  # Zipkin's UI sends "all" for no filter
            annotation_query=parse_annotation_query(query.get("annotationQuery", "")),
            min_duration_us=min_duration,
            max_duration_us=max_duration,
            limit=params.integer(query, "limit", positive=True) or DEFAULT_LIMIT,
        )


@web.middleware
async def bad_parameter_as_400(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ParameterError as error:
        return web.Response(status=400, text=str(error))


def _service(request: web.Request) -> str:
    return params.required_text(request.query, "serviceName", "one of the names /api/v2/services lists")


def _traces_response(traces: list[list[Span]]) -> web.Response:
    body: list[list[dict[str, Any]]] = [[zipkin_json.span_to_zipkin_dict(span) for span in spans] for spans in traces]
    return web.json_response(body)
