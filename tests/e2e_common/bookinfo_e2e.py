"""The Bookinfo end-to-end assertions, shared by the netns tests and the kind tests: the same
backend client (`tracemesh traces`' own) and the same trace-shape checker (`tracemesh demo`'s)
against whatever Zipkin- or Jaeger-API backend the deployment has.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from tracemesh_bookinfo.trace_shape import (
    INGRESS_GATEWAY,
    REVIEWS_VERSIONS,
    BookinfoTrace,
    inspect_bookinfo_trace,
    summarize,
)
from tracemesh_cli.backend_client import Api, TraceSearch, fetch_traces
from tracemesh_collector.query import trace_timestamp
from tracemesh_sidecar.spans.model import Span

ROOT_SERVICE = "productpage.default"


@dataclass(frozen=True)
class Checked:
    traces: int
    spans: int
    versions: dict[str, int]  # complete traces per reviews version


def now_us() -> int:
    return int(time.time() * 1_000_000)


async def traces_since(backend_url: str, api: Api, since_us: int, limit: int = 200) -> list[list[Span]]:
    traces = await fetch_traces(backend_url, TraceSearch(service=ROOT_SERVICE, limit=limit), api=api)
    return [trace for trace in traces if trace_timestamp(trace) >= since_us]


async def wait_for_complete_traces(backend_url: str, api: Api, since_us: int, expected: int,
                                   timeout_s: float = 20.0, gateway: str | None = None) -> list[list[Span]]:
    """`expected` Bookinfo traces that started after `since_us`, each complete (spans arrive in
    batches from several sidecars, so a trace may be partial for a moment). `gateway`: the service name
    of the ingress gateway at every trace's root (e.g. `istio-ingressgateway.istio-system`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        traces = await traces_since(backend_url, api, since_us)
        problems = [problem for trace in traces for problem in _inspect(trace, gateway).problems]
        if len(traces) >= expected and not problems:
            return traces
        if time.monotonic() > deadline:
            raise AssertionError(f"wanted {expected} complete Bookinfo traces from {backend_url} ({api}) within "
                                 f"{timeout_s}s; have {len(traces)}, problems: {problems[:10]}")
        await asyncio.sleep(0.5)


def _inspect(trace: Sequence[Span], gateway: str | None) -> BookinfoTrace:
    return inspect_bookinfo_trace(trace, ingress_gateway=gateway is not None,
                                  gateway_service=gateway or INGRESS_GATEWAY)


def check_traces(traces: Sequence[Sequence[Span]], pod_ips: Mapping[str, set[str]] | None = None,
                 gateway: str | None = None) -> Checked:
    """Every trace complete per the mesh contract (rooted at `gateway`, when given); with `pod_ips`
    (canonical service -> its pods' IPs), every span's localEndpoint.ipv4 is one of its own pods' and
    every non-root SERVER span's peer.address one of its caller's pods'."""
    checked = [_inspect(trace, gateway) for trace in traces]
    problems = [problem for trace in checked for problem in trace.problems]
    assert not problems, problems[:10]
    if pod_ips is not None:
        for trace in traces:
            check_addresses(trace, pod_ips)
    return Checked(traces=len(traces), spans=sum(len(trace) for trace in traces), versions=summarize(checked))


def check_every_reviews_version(checked: Checked, requests: int) -> None:
    """Every reviews version answered some of the `requests`: the caller's sidecar balances each request
    over the endpoints the operator pushed (kube-proxy alone picks once per kept-alive connection)."""
    assert sum(checked.versions.values()) == requests, f"{checked.versions} for {requests} requests"
    assert set(checked.versions) == set(REVIEWS_VERSIONS), (
        f"reviews versions across {requests} requests: {checked.versions}; wanted all of {', '.join(REVIEWS_VERSIONS)}")


def check_addresses(trace: Sequence[Span], pod_ips: Mapping[str, set[str]]) -> None:
    by_id = {span.id: span for span in trace}
    for span in trace:
        service = canonical_service(span)
        ipv4 = span.local_endpoint.ipv4
        assert ipv4 in pod_ips[service], f"{span.name} ({span.kind}): localEndpoint.ipv4 {ipv4} is not a {service} pod"
        parent = by_id.get(span.parent_id or "")
        if span.kind == "SERVER" and parent is not None:
            caller = canonical_service(parent)
            peer = span.tags.get("peer.address", "").rsplit(":", 1)[0]
            assert peer in pod_ips[caller], f"{span.name} SERVER: peer.address {peer} is not a {caller} pod"


def canonical_service(span: Span) -> str:
    """`reviews` from the span's service name `reviews.default`."""
    return (span.local_endpoint.service_name or "").rsplit(".", 1)[0]


async def send_requests(request: Callable[[], Awaitable[int]], count: int) -> list[float]:
    """`count` GET /productpage, one after another; every one must answer 200. Returns latencies (s)."""
    latencies = []
    for index in range(count):
        started = time.monotonic()
        status = await request()
        latencies.append(time.monotonic() - started)
        assert status == 200, f"request {index + 1}/{count}: status {status}"
    return latencies
