"""Reading productpage's traces back from the collector, through the API a real backend of the provider serves."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from tracemesh_cli.demo.traffic import TraceSource
from tracemesh_collector.jaeger_json import trace_from_jaeger
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.spans.zipkin_json import span_from_zipkin_dict

SERVICE = "productpage.default"


async def _get_json(url: str, params: dict[str, str]) -> Any:
    async with aiohttp.ClientSession(trust_env=False, timeout=aiohttp.ClientTimeout(total=5)) as session, \
            session.get(url, params=params) as response:
        response.raise_for_status()
        return await response.json()


def zipkin_source(base_url: str) -> TraceSource:
    """`GET /api/v2/traces?serviceName=...` (Zipkin v2 API)."""
    async def fetch(limit: int, lookback_ms: int) -> list[list[Span]]:
        body = await _get_json(f"{base_url}/api/v2/traces", {
            "serviceName": SERVICE, "limit": str(limit), "lookback": str(lookback_ms)})
        return [[span_from_zipkin_dict(item, "span") for item in trace] for trace in body]
    return fetch


def jaeger_source(base_url: str) -> TraceSource:
    """`GET /api/traces?service=...` (Jaeger query API, as the Jaeger UI calls it)."""
    async def fetch(limit: int, lookback_ms: int) -> list[list[Span]]:
        end_us = int(time.time() * 1_000_000)
        body = await _get_json(f"{base_url}/api/traces", {
            "service": SERVICE, "limit": str(limit), "start": str(end_us - lookback_ms * 1000), "end": str(end_us)})
        return [trace_from_jaeger(trace) for trace in body.get("data") or []]
    return fetch
