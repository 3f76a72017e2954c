"""Zipkin's HTTP API over the span store: span ingest (v2 and v1) and the query endpoints Zipkin's UI and clients use.

Behaviour follows the official API (zipkin2-api.yaml) and zipkin-server's ZipkinHttpCollector
(zipkin-server/src/main/java/zipkin2/server/internal/ZipkinHttpCollector.java): ingest answers 202;
`/api/v2/spans` reads proto3 when the Content-Type says `application/x-protobuf` and v2 JSON
otherwise (text/plain or none too), `/api/v1/spans` reads Thrift for `application/x-thrift` and v1
JSON otherwise; a JSON body of the other version is refused naming the version it looks like; an
empty body or `[]` is accepted and stores nothing; a payload that fails to decode is rejected
whole with a 400 saying what is wrong; a body over the size cap gets a 413 (request_body). Bad
query parameters get a 400 naming the parameter. `UI_CONFIG_ROUTE` serves `/zipkin/config.json`, the
UI's configuration as zipkin-server writes it (the server mounts the query routes under `/zipkin` too).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from tracemesh_collector import params, zipkin_v1_json, zipkin_v1_thrift, zipkin_v2_json
from tracemesh_collector.dependency_links import dependency_links
from tracemesh_collector.params import ParameterError
from tracemesh_collector.query import DEFAULT_LIMIT, DEFAULT_LOOKBACK_US, TraceQuery, parse_annotation_query
from tracemesh_collector.request_body import BodyRefused, read_spans, refusal, refuse_oversized_expectation
from tracemesh_collector.store import SpanStore
from tracemesh_sidecar.spans import zipkin_json, zipkin_proto
from tracemesh_sidecar.spans.model import Span

Clock = Callable[[], float]  # seconds since the epoch, like time.time
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

Decoder = Callable[[bytes], list[Span]]

# zipkin-server's UI config (ZipkinUiConfiguration.writeConfig with zipkin-server-shared.yml's defaults),
# byte for byte as ITZipkinUiConfiguration.configJson expects it
UI_CONFIG = """{
  "environment" : "",
  "queryLimit" : 10,
  "defaultLookback" : 900000,
  "searchEnabled" : true,
  "logsUrl" : null,
  "supportUrl" : null,
  "archivePostUrl" : null,
  "archiveUrl" : null,
  "dependency" : {
    "enabled" : true,
    "lowErrorRate" : 0.5,
    "highErrorRate" : 0.75
  }
}"""


class ZipkinApi:
    def __init__(self, store: SpanStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def routes(self) -> list[web.RouteDef]:
        queries = [
            ("/api/v2/services", self.services),
            ("/api/v2/spans", self.span_names),
            ("/api/v2/remoteServices", self.remote_services),
            ("/api/v2/traces", self.traces),
            ("/api/v2/trace/{traceId}", self.trace),
            ("/api/v2/traceMany", self.trace_many),
            ("/api/v2/dependencies", self.dependencies),
            ("/api/v2/autocompleteKeys", self.autocomplete_keys),
            ("/api/v2/autocompleteValues", self.autocomplete_values),
        ]
        return [
            web.post("/api/v2/spans", self.post_spans_v2, expect_handler=refuse_oversized_expectation),
            web.post("/api/v1/spans", self.post_spans_v1, expect_handler=refuse_oversized_expectation),
            *(web.get(path, handler) for path, handler in queries),
        ]

    async def post_spans_v2(self, request: web.Request) -> web.Response:
        if request.content_type == "application/x-protobuf":
            return await self._ingest(request, zipkin_proto.decode_spans)
        return await self._ingest(request, zipkin_v2_json.decode_spans, "JSON_V2", (b'yAnnotations"', "JSON_V1"))

    async def post_spans_v1(self, request: web.Request) -> web.Response:
        if request.content_type == "application/x-thrift":
            return await self._ingest(request, zipkin_v1_thrift.decode_spans)
        return await self._ingest(request, zipkin_v1_json.decode_spans, "JSON_V1",
                                  (b'Endpoint"', "JSON_V2"), (b'"tags"', "JSON_V2"))

    async def _ingest(self, request: web.Request, decode: Decoder, expected: str = "",
                      *other_format_markers: tuple[bytes, str]) -> web.Response:
        def checked_decode(body: bytes) -> list[Span]:
            if not body or body == b"[]":
                return []
            # ZipkinHttpCollector.testForUnexpectedFormat: v1 and v2 JSON look alike when little is sent
            for marker, other in other_format_markers:
                if marker in body:
                    raise BodyRefused(400, f"Expected a {expected} encoded list, but received: {other}")
            return decode(body)

        try:
            spans = await read_spans(request, checked_decode)
        except BodyRefused as refused:
            return refusal(refused, web.Response(status=refused.status, text=refused.message))
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
        links = await dependency_links(self.store, end_ms * 1000, lookback_us)
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


async def ui_config(request: web.Request) -> web.Response:
    """`/zipkin/config.json`, as zipkin-server serves it (ZipkinUiConfiguration: JSON, cached ten minutes)."""
    return web.Response(text=UI_CONFIG, content_type="application/json", charset="utf-8",
                        headers={"Cache-Control": "max-age=600"})


UI_CONFIG_ROUTE = web.get("/zipkin/config.json", ui_config)


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
