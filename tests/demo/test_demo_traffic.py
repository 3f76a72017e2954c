"""The demo's requests and the matching of each request to its own trace."""

from __future__ import annotations

import time

import pytest
from aiohttp import web

from tracemesh_bookinfo.trace_shape import BookinfoTrace
from tracemesh_cli.backend_client import BackendError
from tracemesh_cli.demo import traffic
from tracemesh_cli.demo.traffic import Sent, match_traces, request_id_of, send_requests, wait_for_traces
from tracemesh_sidecar.spans.model import Endpoint, Span


def span(span_id: str, request_id: str | None, parent: str | None = None) -> Span:
    tags = {} if request_id is None else {"guid:x-request-id": request_id}
    return Span(trace_id="a" * 32, id=span_id, parent_id=parent, name="n", kind="SERVER", timestamp=1, duration=1,
                local_endpoint=Endpoint("productpage.default"), tags=tags)


def test_request_id_of_prefers_the_root() -> None:
    assert request_id_of([span("2" * 16, "child", "1" * 16), span("1" * 16, "root")]) == "root"
    assert request_id_of([span("2" * 16, "child", "1" * 16)]) == "child"
    assert request_id_of([span("1" * 16, None)]) is None


def test_match_traces_finds_each_request_and_ignores_others() -> None:
    sent = [Sent("r1", 200), Sent("r2", 200)]
    found = match_traces(sent, [[span("1" * 16, "other")], [span("2" * 16, "r2")]])
    assert found["r1"] is None
    r2 = found["r2"]
    assert r2 is not None and r2.spans[0].id == "2" * 16 and not r2.shape.complete


async def test_send_requests_gives_each_request_its_own_id() -> None:
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers["x-request-id"])
        return web.Response(status=200 if len(seen) < 3 else 503)

    app = web.Application()
    app.router.add_get("/productpage", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        sent = await send_requests(f"http://127.0.0.1:{runner.addresses[0][1]}/productpage", 3)
    finally:
        await runner.cleanup()
    assert [item.request_id for item in sent] == seen and len(set(seen)) == 3
    assert [item.status for item in sent] == [200, 200, 503]


async def test_send_requests_records_no_response_as_0() -> None:
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    await runner.cleanup()
    assert [item.status for item in await send_requests(f"http://127.0.0.1:{port}/productpage", 2)] == [0, 0]


async def test_wait_for_traces_polls_until_every_trace_is_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    # The shape check is tested on its own; here a trace counts as complete once it has two spans.
    def two_spans_complete(spans: list[Span], ingress_gateway: bool = False) -> BookinfoTrace:
        return BookinfoTrace(spans[0].trace_id, "v1", () if len(spans) == 2 else ("partial",))

    monkeypatch.setattr(traffic, "inspect_bookinfo_trace", two_spans_complete)
    calls: list[tuple[int, int]] = []

    async def source(limit: int, lookback_ms: int) -> list[list[Span]]:
        calls.append((limit, lookback_ms))
        if len(calls) == 1:
            raise BackendError("cannot reach the backend")
        second = [span("2" * 16, "r1")] if len(calls) >= 3 else []
        return [[span("1" * 16, "r1"), *second]]

    started = time.time()
    found = await wait_for_traces(source, [Sent("r1", 200)], started, timeout_s=10)
    result = found["r1"]
    assert result is not None and result.shape.complete and len(calls) == 3
    assert all(limit == 2 and 60_000 <= lookback_ms < 70_000 for limit, lookback_ms in calls)


async def test_wait_for_traces_gives_up_after_the_timeout() -> None:
    async def nothing(limit: int, lookback_ms: int) -> list[list[Span]]:
        return []

    started = time.monotonic()
    found = await wait_for_traces(nothing, [Sent("r1", 200)], time.time(), timeout_s=0.5)
    assert found == {"r1": None}
    assert 0.5 <= time.monotonic() - started < 3


async def test_wait_for_traces_stops_once_incomplete_traces_settle() -> None:
    async def always_partial(limit: int, lookback_ms: int) -> list[list[Span]]:
        return [[span("1" * 16, "r1")]]

    started = time.monotonic()
    found = await wait_for_traces(always_partial, [Sent("r1", 200)], time.time(), timeout_s=30)
    result = found["r1"]
    assert result is not None and not result.shape.complete
    assert traffic.SETTLE_S <= time.monotonic() - started < traffic.SETTLE_S + 2
