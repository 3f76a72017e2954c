"""The Jaeger query API as the Jaeger UI calls it: services, operations, trace search, one trace, dependencies.

Responses use Jaeger's envelope `{"data", "total", "limit", "offset", "errors"}` and its trace
JSON (jaeger_json). Parameters follow Jaeger's query service: `start`/`end` in epoch
microseconds (default: the last two days), `minDuration`/`maxDuration` as durations (`250ms`),
`tags` as a JSON object or repeated `tag=key:value`, `limit` defaulting to 100, repeated
`traceID` to fetch given traces; `lookback=1h` is honoured when `start` is absent. As Jaeger's query
service does, a SERVER span sharing a CLIENT span's id gets an id of its own (jaeger_adjust).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from tracemesh_collector import params
from tracemesh_collector.dependency_links import dependency_links
from tracemesh_collector.jaeger_adjust import deduplicate_client_server_span_ids
from tracemesh_collector.jaeger_json import trace_to_jaeger
from tracemesh_collector.params import ParameterError
from tracemesh_collector.query import TraceQuery
from tracemesh_collector.store import SpanStore
from tracemesh_collector.zipkin_api import Clock, Handler
from tracemesh_sidecar.spans.model import Span

DEFAULT_LIMIT = 100  # Jaeger's query service default
DEFAULT_LOOKBACK_US = 2 * 86_400_000_000  # Jaeger's default query lookback: two days
DEPENDENCIES_LOOKBACK_MS = 86_400_000


class JaegerApi:
    def __init__(self, store: SpanStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/services", self.services),
            web.get("/api/services/{service}/operations", self.service_operations),
            web.get("/api/operations", self.operations),
            web.get("/api/traces", self.traces),
            web.get("/api/traces/{traceID}", self.trace),
            web.get("/api/dependencies", self.dependencies),
        ]

    async def services(self, request: web.Request) -> web.Response:
        return envelope(self.store.services())

    async def service_operations(self, request: web.Request) -> web.Response:
        return envelope(self.store.span_names(request.match_info["service"]))

    async def operations(self, request: web.Request) -> web.Response:
        service = params.required_text(request.query, "service", "one of the names /api/services lists")
        wanted_kind = request.query.get("spanKind", "").lower()
        operations = [{"name": name, "spanKind": (kind or "").lower()} for name, kind in self.store.operations(service)]
        return envelope([op for op in operations if not wanted_kind or op["spanKind"] == wanted_kind])

    async def traces(self, request: web.Request) -> web.Response:
        trace_ids = request.query.getall("traceID", [])
        if trace_ids:
            found = self.store.get_traces(params.trace_id(trace_id, "traceID") for trace_id in trace_ids)
        else:
            found = self.store.find_traces(self._trace_query(request.query))
        return envelope([_jaeger_trace(spans) for spans in found])

    async def trace(self, request: web.Request) -> web.Response:
        spans = self.store.get_trace(params.trace_id(request.match_info["traceID"], "traceID"))
        if not spans:
            return error_envelope(404, f"trace {request.match_info['traceID']} not found")
        return envelope([_jaeger_trace(spans)])

    async def dependencies(self, request: web.Request) -> web.Response:
        end_ms = params.integer(request.query, "endTs", positive=True, what="epoch milliseconds")
        lookback_ms = params.integer(request.query, "lookback", positive=True, what="milliseconds")
        end_us = (end_ms or int(self.clock() * 1000)) * 1000
        links = await dependency_links(self.store, end_us, (lookback_ms or DEPENDENCIES_LOOKBACK_MS) * 1000)
        return envelope([{"parent": link.parent, "child": link.child, "callCount": link.call_count}
                         for link in links])

    def _trace_query(self, query: MultiMapping[str]) -> TraceQuery:
        service = params.required_text(query, "service", "one of the names /api/services lists (or give traceID)")
        end_us = params.integer(query, "end", positive=True, what="epoch microseconds") or int(self.clock() * 1e6)
        start_us = params.integer(query, "start", positive=True, what="epoch microseconds")
        if start_us is None:
            # the UI sends lookback=custom with explicit start/end, and start/end always
            lookback_us = None if query.get("lookback") == "custom" else params.duration_us(query, "lookback")
            if lookback_us is None:
                lookback_us = DEFAULT_LOOKBACK_US
        elif start_us > end_us:
            raise ParameterError("start", f"must not be after end ({end_us}), got {start_us}")
        else:
            lookback_us = end_us - start_us
        min_duration = params.duration_us(query, "minDuration")
        max_duration = params.duration_us(query, "maxDuration")
        if min_duration and max_duration and max_duration < min_duration:
            raise ParameterError("maxDuration", f"must be at least minDuration ({query['minDuration']})")
        return TraceQuery(
            end_us=end_us,
            lookback_us=lookback_us,
            service_name=service,
            span_name=params.text(query, "operation"),
            annotation_query=_tags(query),
            min_duration_us=min_duration or None,
            max_duration_us=max_duration or None,
            limit=params.integer(query, "limit", positive=True) or DEFAULT_LIMIT,
        )


def _jaeger_trace(spans: list[Span]) -> dict[str, Any]:
    """A trace as Jaeger's query service serves it: ids made unique (jaeger_adjust), then Jaeger's JSON."""
    return trace_to_jaeger(deduplicate_client_server_span_ids(spans))


def envelope(data: Any) -> web.Response:
    return web.json_response({"data": data, "total": len(data), "limit": 0, "offset": 0, "errors": None})


def error_envelope(status: int, message: str) -> web.Response:
    body = {"data": None, "total": 0, "limit": 0, "offset": 0, "errors": [{"code": status, "msg": message}]}
    return web.json_response(body, status=status)


@web.middleware
async def bad_parameter_as_400(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ParameterError as error:
        return error_envelope(400, str(error))


def _tags(query: MultiMapping[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in filter(None, query.getall("tag", [])):
        key, colon, value = item.partition(":")
        if not colon or not key:
            raise ParameterError("tag", f"must be key:value, e.g. http.status_code:500, got {item!r}")
        tags[key] = value
    for document in filter(None, query.getall("tags", [])):
        tags.update(_json_tags(document))
    return tags


def _json_tags(document: str) -> Mapping[str, str]:
    try:
        tags = json.loads(document)
    except json.JSONDecodeError:
        tags = None
    if not isinstance(tags, dict) or not all(isinstance(value, str) for value in tags.values()):
        raise ParameterError("tags", f'must be a JSON object of strings, e.g. {{"error":"true"}}, got {document!r}')
    return tags
