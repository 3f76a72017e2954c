"""Sending the demo's requests and reading their traces back, each request matched to its own trace.

Every request carries a fresh `x-request-id`; the proxies keep one they receive (packing their sampling
decision into its 15th character, as Envoy does) and tag every span with it (`guid:x-request-id`), so
each trace is found by the request that caused it, even when
the backend also holds traces from earlier runs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp

from tracemesh_bookinfo.trace_shape import BookinfoTrace, inspect_bookinfo_trace
from tracemesh_cli.backend_client import Api, BackendError, TraceSearch, fetch_traces
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.tracing.request_id import without_trace_reason

ENTRY_SERVICE = "productpage.default"
REQUEST_ID_TAG = "guid:x-request-id"
SETTLE_S = 2.0  # several export flush intervals (0.5 s by default) without a new span
# Fetches the traces of productpage from the backend: (limit, lookback in ms) -> traces.
TraceSource = Callable[[int, int], Awaitable[list[list[Span]]]]


def backend_source(url: str, api: Api) -> TraceSource:
    """productpage's traces from a backend's own query API (Zipkin's, or Jaeger's)."""
    async def fetch(limit: int, lookback_ms: int) -> list[list[Span]]:
        return await fetch_traces(url, TraceSearch(ENTRY_SERVICE, limit=limit, lookback_us=lookback_ms * 1000),
                                  api=api)
    return fetch


@dataclass(frozen=True, slots=True)
class Sent:
    request_id: str
    status: int  # 0: no response


@dataclass(frozen=True, slots=True)
class Found:
    """The trace one request caused, and what the shape check made of it."""

    spans: Sequence[Span]
    shape: BookinfoTrace


async def send_requests(url: str, count: int, timeout_s: float = 10.0) -> list[Sent]:
    """`count` GETs of `url`, one after another (so reviews' round-robin shows each version in turn)."""
    sent = []
    # trust_env=False: the demo talks to the gateway directly, whatever proxy the user's shell sets.
    async with aiohttp.ClientSession(trust_env=False, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        for _ in range(count):
            request_id = str(uuid.uuid4())
            try:
                async with session.get(url, headers={"x-request-id": request_id}) as response:
                    await response.read()
                    sent.append(Sent(request_id, response.status))
            except (TimeoutError, aiohttp.ClientError):
                sent.append(Sent(request_id, 0))
    return sent


def request_id_of(trace: Sequence[Span]) -> str | None:
    """The x-request-id of the root span (the request the demo sent), else of any span."""
    roots = [span for span in trace if not span.parent_id and REQUEST_ID_TAG in span.tags]
    for span in [*roots, *trace]:
        if REQUEST_ID_TAG in span.tags:
            return span.tags[REQUEST_ID_TAG]
    return None


def match_traces(sent: Sequence[Sent], traces: Sequence[Sequence[Span]]) -> dict[str, Found | None]:
    """Each sent request id -> its trace and the shape check's verdict, or None while no trace carries it."""
    by_request: dict[str, Sequence[Span]] = {}
    for trace in traces:
        request_id = request_id_of(trace)
        if request_id is not None:  # the proxies pack their sampling decision into it, as Envoy does
            by_request[without_trace_reason(request_id)] = trace
    found: dict[str, Found | None] = {}
    for item in sent:
        spans = by_request.get(item.request_id)
        # The demo's requests come in through the ingress gateway: its span is every trace's root.
        found[item.request_id] = None if spans is None else \
            Found(spans, inspect_bookinfo_trace(spans, ingress_gateway=True))
    return found


async def wait_for_traces(source: TraceSource, sent: Sequence[Sent], started_at: float,
                          timeout_s: float) -> dict[str, Found | None]:
    """Polls until every request's trace is complete, or settled, or `timeout_s` passes; returns the last look.

    Spans reach the backend in batches from six proxies, so a trace fills up over a second or so.
    Settled: every request has a trace and no new span arrived for SETTLE_S, so an incomplete trace
    will stay that way and waiting longer only delays the verdict.
    """
    deadline = time.monotonic() + timeout_s
    span_count, unchanged_since = -1, time.monotonic()
    while True:
        lookback_ms = int((time.time() - started_at) * 1000) + 60_000
        try:
            found = match_traces(sent, await source(max(len(sent), 1) * 2, lookback_ms))
        except BackendError:  # not up yet, or briefly busy: look again
            found = dict.fromkeys((item.request_id for item in sent), None)
        now = time.monotonic()
        count = sum(len(trace.spans) for trace in found.values() if trace is not None)
        if count != span_count:
            span_count, unchanged_since = count, now
        every_trace_here = all(trace is not None for trace in found.values())
        if all(trace is not None and trace.shape.complete for trace in found.values()) or now > deadline or \
                (every_trace_here and now - unchanged_since >= SETTLE_S):
            return found
        await asyncio.sleep(0.3)
