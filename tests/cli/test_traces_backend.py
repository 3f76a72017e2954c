"""backend_client and `tracemesh traces` against the in-process collector's Zipkin and Jaeger APIs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from test_traces_tree import BOOKINFO, BOOKINFO_TREE, T0

from tracemesh_cli.backend_client import BackendError, TraceSearch, fetch_trace, fetch_traces, normalize_url
from tracemesh_cli.main import main
from tracemesh_collector import RunningCollector, run_collector
from tracemesh_sidecar.spans.model import Span

SECOND = 1_000_000


def bookinfo_at(trace_id: str, seconds_ago: float) -> list[Span]:
    now = int(time.time() * SECOND)
    return [replace(span, trace_id=trace_id, timestamp=span.timestamp - T0 + now - int(seconds_ago * SECOND))
            for span in BOOKINFO]


def by_id(spans: list[Span]) -> dict[str, Span]:
    return {span.id: span for span in spans}


@pytest.fixture
async def collector() -> AsyncIterator[RunningCollector]:
    async with run_collector("127.0.0.1", zipkin_port=0, otlp_port=0, query_port=0, otlp_grpc_port=0) as running:
        running.store.add(bookinfo_at("4e441824ec2b6a4400000000000000a1", 30))
        running.store.add(bookinfo_at("4e441824ec2b6a4400000000000000a2", 20))
        running.store.add(bookinfo_at("4e441824ec2b6a4400000000000000a3", 10))
        yield running


def urls(collector: RunningCollector) -> list[str]:
    return [collector.zipkin_url, collector.query_url]


@pytest.mark.parametrize("api", ["zipkin", "jaeger"])
async def test_traces_read_back_whole_from_either_api(collector: RunningCollector, api: str) -> None:
    url = collector.zipkin_url if api == "zipkin" else collector.query_url
    traces = await fetch_traces(url, TraceSearch(service="productpage.default", limit=2))
    assert [trace[0].trace_id for trace in traces] == ["4e441824ec2b6a4400000000000000a3",
                                                       "4e441824ec2b6a4400000000000000a2"]
    assert by_id(traces[0]) == by_id(collector.store.get_trace("4e441824ec2b6a4400000000000000a3"))


async def test_the_api_can_be_named(collector: RunningCollector) -> None:
    search = TraceSearch(service="ratings.default")
    assert len(await fetch_traces(collector.query_url, search, api="jaeger")) == 3
    assert len(await fetch_traces(collector.zipkin_url, search, api="zipkin")) == 3
    with pytest.raises(BackendError, match="answered HTTP 404"):
        await fetch_traces(collector.zipkin_url, search, api="jaeger")


async def test_span_name_and_lookback_narrow_the_search(collector: RunningCollector) -> None:
    for url in urls(collector):
        search = TraceSearch(service="reviews.default", span_name="ratings.default.svc.cluster.local:9080/*")
        assert len(await fetch_traces(url, search)) == 3
        assert await fetch_traces(url, replace(search, span_name="details.default.svc.cluster.local:9080/*")) == []
        assert len(await fetch_traces(url, TraceSearch(service="reviews.default", lookback_us=15 * SECOND))) == 1


async def test_one_trace_by_id(collector: RunningCollector) -> None:
    for url in urls(collector):
        trace = await fetch_trace(url, "4e441824ec2b6a4400000000000000a2")
        assert by_id(trace) == by_id(collector.store.get_trace("4e441824ec2b6a4400000000000000a2"))
        assert await fetch_trace(url, "00000000000000000000000000000bad") == []


async def test_a_backend_that_is_down_is_named(unused_tcp_port: int) -> None:
    port = unused_tcp_port
    with pytest.raises(BackendError, match=rf"cannot reach http://127.0.0.1:{port}/api/v2/services"):
        await fetch_traces(f"127.0.0.1:{port}", TraceSearch(service="x"))


async def test_a_url_that_is_no_tracing_backend_is_named(collector: RunningCollector) -> None:
    with pytest.raises(BackendError, match=r"/api/traces answered HTTP 404"):
        await fetch_traces(collector.otlp_url, TraceSearch(service="x"))


def test_normalize_url() -> None:
    assert normalize_url(" 127.0.0.1:9411/ ") == "http://127.0.0.1:9411"
    assert normalize_url("https://zipkin.example/zipkin/") == "https://zipkin.example/zipkin"


async def run_cli(*args: str) -> int:
    return await asyncio.to_thread(main, ["traces", *args])


async def test_the_command_prints_the_newest_trace_as_a_tree(collector: RunningCollector,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    for url in urls(collector):
        assert await run_cli("--service", "productpage.default", "--backend", url, "--limit", "1") == 0
        expected = BOOKINFO_TREE.replace("4e441824ec2b6a44ffdc9bb9a6453df3", "4e441824ec2b6a4400000000000000a3")
        assert capsys.readouterr().out == expected + "\n"


async def test_the_command_without_matches_or_backend(collector: RunningCollector,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_cli("--service", "nobody.default", "--backend", collector.zipkin_url) == 0
    assert "no traces of service 'nobody.default' in the last 1h" in capsys.readouterr().out
    assert await run_cli("--service", "x", "--backend", collector.otlp_url) == 1
    assert "tracemesh traces: " in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--lookback", "soon", "'soon' is not a duration"), ("--lookback", "0s", "must be longer than zero"),
    ("--limit", "0", "must be a positive integer")])
def test_bad_options_are_refused(capsys: pytest.CaptureFixture[str], option: str, value: str, message: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["traces", "--service", "x", option, value])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
