"""Fetch traces from a tracing backend: real Zipkin, real Jaeger, or the embedded collector's Zipkin or Jaeger API.

`api="auto"` asks whether the URL serves the Zipkin API (`GET /api/v2/services`) and uses
Jaeger's (`GET /api/traces`) when it does not. Traces come back newest first as Span lists.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from tracemesh_collector.jaeger_json import trace_from_jaeger
from tracemesh_collector.query import trace_timestamp
from tracemesh_sidecar.spans.errors import SpanDecodeError
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.spans.zipkin_json import span_from_zipkin_dict

Api = Literal["auto", "zipkin", "jaeger"]
APIS: tuple[Api, ...] = ("auto", "zipkin", "jaeger")


class BackendError(Exception):
    """The backend could not be reached or answered something that is not traces; the message says which."""


@dataclass(frozen=True, slots=True)
class TraceSearch:
    service: str
    limit: int = 10
    lookback_us: int = 3_600_000_000
    end_us: int | None = None  # None: now
    span_name: str | None = None


async def fetch_traces(backend_url: str, search: TraceSearch, *, api: Api = "auto",
                       session: aiohttp.ClientSession | None = None, timeout_s: float = 10.0) -> list[list[Span]]:
    """Traces of `search.service`, newest first; BackendError when the backend cannot answer."""
    base = normalize_url(backend_url)
    end_us = search.end_us if search.end_us is not None else int(time.time() * 1_000_000)
    async with _session(session, timeout_s) as client:
        if await _resolve(client, base, api) == "zipkin":
            params = {"serviceName": search.service, "limit": str(search.limit), "endTs": str(end_us // 1000),
                      "lookback": str(max(1, search.lookback_us // 1000))}
            if search.span_name:
                params["spanName"] = search.span_name
            return _newest_first(_zipkin_traces(await _get_json(client, f"{base}/api/v2/traces", params), base))
        params = {"service": search.service, "limit": str(search.limit), "end": str(end_us),
                  "start": str(max(0, end_us - search.lookback_us))}
        if search.span_name:
            params["operation"] = search.span_name
        return _newest_first(_jaeger_traces(await _get_json(client, f"{base}/api/traces", params), base))


async def fetch_trace(backend_url: str, trace_id: str, *, api: Api = "auto",
                      session: aiohttp.ClientSession | None = None, timeout_s: float = 10.0) -> list[Span]:
    """One trace by id; [] when the backend does not know it."""
    base = normalize_url(backend_url)
    async with _session(session, timeout_s) as client:
        if await _resolve(client, base, api) == "zipkin":
            document = await _get_json(client, f"{base}/api/v2/trace/{trace_id}", {}, missing_ok=True)
            return _zipkin_traces([document], base)[0] if document is not None else []
        document = await _get_json(client, f"{base}/api/traces/{trace_id}", {}, missing_ok=True)
        traces = _jaeger_traces(document, base) if document is not None else []
        return traces[0] if traces else []


def normalize_url(url: str) -> str:
    """`127.0.0.1:9411/` -> `http://127.0.0.1:9411`."""
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


async def detect_api(session: aiohttp.ClientSession, base_url: str) -> Api:
    """"zipkin" when the URL answers Zipkin's `GET /api/v2/services` with a JSON array, else "jaeger".

    A Jaeger query port answers that path with a 404, or with its UI's HTML page.
    """
    url = f"{normalize_url(base_url)}/api/v2/services"
    async with _request(session, url, {}) as response:
        if response.status == 200 and response.content_type == "application/json":
            with contextlib.suppress(ValueError):
                if isinstance(json.loads(await response.read()), list):
                    return "zipkin"
    return "jaeger"


async def _resolve(session: aiohttp.ClientSession, base: str, api: Api) -> Api:
    return await detect_api(session, base) if api == "auto" else api


@contextlib.asynccontextmanager
async def _session(given: aiohttp.ClientSession | None, timeout_s: float) -> AsyncIterator[aiohttp.ClientSession]:
    if given is not None:
        yield given
        return
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        yield session


@contextlib.asynccontextmanager
async def _request(session: aiohttp.ClientSession, url: str,
                   params: Mapping[str, str]) -> AsyncIterator[aiohttp.ClientResponse]:
    """A GET whose connection failures and timeouts become BackendErrors that say what to check."""
    try:
        async with session.get(url, params=params) as response:
            yield response
    except aiohttp.ClientConnectionError as error:
        raise BackendError(f"cannot reach {url}: {error}; is the backend running? "
                           "(`tracemesh collector` starts a local one)") from None
    except TimeoutError:
        raise BackendError(f"{url} did not answer in time") from None


async def _get_json(session: aiohttp.ClientSession, url: str, params: Mapping[str, str], *,
                    missing_ok: bool = False) -> Any:
    """The JSON body of a 200, None for a 404 when `missing_ok`; BackendError otherwise."""
    async with _request(session, url, params) as response:
        body = await response.read()
        if response.status == 404 and missing_ok:
            return None
        if response.status == 200 and response.content_type == "application/json":
            try:
                return json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise BackendError(f"{url} answered invalid JSON: {error}") from None
        excerpt = body[:300].decode("utf-8", "replace").strip()
        raise BackendError(f"{url} answered HTTP {response.status} ({response.content_type}): {excerpt}")


def _zipkin_traces(document: Any, base: str) -> list[list[Span]]:
    if not isinstance(document, list):
        raise BackendError(f"{base} answered no Zipkin traces: {str(document)[:300]}")
    try:
        return [[span_from_zipkin_dict(item, f"traces[{i}][{j}]") for j, item in enumerate(_list(trace, i))]
                for i, trace in enumerate(document)]
    except SpanDecodeError as error:
        raise BackendError(f"{base} answered Zipkin traces tracemesh cannot read: {error}") from None


def _jaeger_traces(document: Any, base: str) -> list[list[Span]]:
    data = document.get("data") if isinstance(document, dict) else None
    if document is not None and not isinstance(data, list):
        errors = document.get("errors") if isinstance(document, dict) else None
        raise BackendError(f"{base} answered no Jaeger traces: {errors or str(document)[:300]}")
    try:
        return [trace_from_jaeger(trace, f"data[{i}]") for i, trace in enumerate(data or [])]
    except SpanDecodeError as error:
        raise BackendError(f"{base} answered Jaeger traces tracemesh cannot read: {error}") from None


def _list(trace: Any, index: int) -> list[Any]:
    if not isinstance(trace, list):
        raise SpanDecodeError(f"traces[{index}]", "must be an array of spans")
    return trace


def _newest_first(traces: list[list[Span]]) -> list[list[Span]]:
    return sorted((trace for trace in traces if trace), key=trace_timestamp, reverse=True)
