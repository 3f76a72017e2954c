"""The embedded collector: ingest cost, memory per stored span, and search latency at 10k/100k(/1M) stored spans.

    python -m bench.collector [--sizes 10000,100000] [--million] [--concurrency 4] [--queries 20]

One `tracemesh collector` process, filled in steps up to each size of `--sizes` (`--million` adds
1 000 000: its load takes several minutes and ~2 GB). Each step brings half its spans as Zipkin
v2 JSON on /api/v2/spans and half as OTLP protobuf on /v1/traces, in 100-span batches of
mesh-shaped traces (Bookinfo's seven spans with a sidecar's tags), from `--concurrency`
connections. Ingest is reported as spans per CPU-second of the collector (its utime + stime over
the ingest of that format: what a span costs it, whatever else runs on the machine), per second
of wall time, and as the RSS growth over that ingest per span it brought. Memory is also the
collector's RSS growth over what it had before any ingest, divided by the spans it then holds
(next to the store's own estimate, which its byte bound uses). On a compiled build, two fresh
collectors then ingest BUILD_SPANS spans the same way, one compiled and one on pure Python
(TRACEMESH_PURE_PYTHON=1): what compiling the store and the codecs gains, in the same run.
At each size every query runs `--queries` times against the store: p50 / p99 (the first `dependencies`
after an ingest counts the calls of every trace added since, the next ones only what changed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Iterator

import aiohttp

from bench.processes import cpu_seconds, free_port, percentile, save_results, started
from tracemesh_sidecar import BUILD
from tracemesh_sidecar.build import PURE_PYTHON_ENV
from tracemesh_sidecar.spans import otlp_writer, zipkin_json
from tracemesh_sidecar.spans.model import Endpoint, Span

BATCH = 100
START_US = 1_763_700_000_000_000
HOPS = [("productpage", None), ("productpage", "details"), ("details", None), ("productpage", "reviews"),
        ("reviews", None), ("reviews", "ratings"), ("ratings", None)]


def mesh_trace(number: int) -> list[Span]:
    """Seven spans shaped like the mesh's: a CLIENT and SERVER per hop, with an Envoy-like tag set."""
    trace_id = f"4e441824ec2b6a44{number:016x}"
    start = START_US + number * 1000
    spans: list[Span] = []
    for index, (service, callee) in enumerate(HOPS):
        target = callee or service
        tags = {"http.method": "GET", "http.status_code": "200", "http.url": f"http://{target}:9080/{target}/0",
                "http.protocol": "HTTP/1.1", "user_agent": "python-requests/2.32.3", "response_size": "358",
                "request_size": "0", "response_flags": "-",
                "node_id": f"sidecar~10.244.0.{index}~{service}-v1-x.default",
                "zone": "", "istio.canonical_service": service, "istio.canonical_revision": "v1",
                "istio.mesh_id": "cluster.local", "istio.namespace": "default",
                "upstream_cluster": f"outbound|9080||{target}.default.svc.cluster.local",
                "upstream_cluster.name": f"outbound|9080||{target}.default.svc.cluster.local",
                "component": "proxy", "guid:x-request-id": f"{number:08x}-1111-2222-3333-444455556666",
                "peer.address": f"10.244.0.{index + 10}"}
        if number % 1000 == 0 and not callee and service == "ratings":  # a rare error, for annotationQuery
            tags["error"] = "true"
        spans.append(Span(
            trace_id=trace_id, id=f"{number:08x}{index + 1:08x}",
            parent_id=f"{number:08x}{index:08x}" if index else None,
            name=f"{target}.default.svc.cluster.local:9080/*", kind="CLIENT" if callee else "SERVER",
            timestamp=start + index * 100, duration=20_000 - index * 1000,
            local_endpoint=Endpoint(f"{service}.default", f"10.244.0.{index}"),
            remote_endpoint=Endpoint(f"{callee}.default", f"10.244.0.{index + 10}", None, 9080) if callee else None,
            tags=tags))
    return spans


def batches(first_trace: int, spans: int) -> Iterator[list[Span]]:
    """`spans` spans of consecutive traces from `first_trace` on, in BATCH-span batches, made as they are sent."""
    pending: list[Span] = []
    number = first_trace
    while spans > 0:
        while len(pending) < min(BATCH, spans):
            pending += mesh_trace(number)
            number += 1
        size = min(BATCH, spans)
        yield pending[:size]
        pending, spans = pending[size:], spans - size


async def ingest(http: aiohttp.ClientSession, url: str, media_type: str, bodies: Iterator[bytes],
                 concurrency: int) -> float:
    """Seconds to post every body, `concurrency` at a time."""

    async def worker() -> None:
        for body in bodies:  # one iterator shared by the workers: each body is sent once
            async with http.post(url, data=body, headers={"Content-Type": media_type}) as response:
                if response.status not in (200, 202):
                    raise RuntimeError(f"{url} answered {response.status}: {await response.text()}")

    started_at = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started_at


async def latencies(http: aiohttp.ClientSession, url: str, times: int) -> list[float]:
    measured = []
    for _ in range(times):
        started_at = time.perf_counter()
        async with http.get(url) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"{url} answered {response.status}")
        measured.append((time.perf_counter() - started_at) * 1000)
    return measured


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def queries(zipkin: str, jaeger: str, end_ms: int) -> dict[str, str]:
    """The searches timed at each size; `end_ms` is after the last trace's start."""
    return {
        "zipkin traces serviceName=ratings limit=10":
            f"{zipkin}/api/v2/traces?serviceName=ratings.default&limit=10&endTs={end_ms}&lookback=86400000",
        "zipkin traces serviceName+spanName limit=10":
            f"{zipkin}/api/v2/traces?serviceName=reviews.default&spanName=ratings.default.svc.cluster.local%3A9080%2F*"
            f"&limit=10&endTs={end_ms}&lookback=86400000",
        "zipkin traces (no filter) limit=10": f"{zipkin}/api/v2/traces?limit=10&endTs={end_ms}&lookback=86400000",
        "zipkin traces annotationQuery (no match)":
            f"{zipkin}/api/v2/traces?annotationQuery=http.status_code%3D503&limit=10&endTs={end_ms}",
        "zipkin traces annotationQuery (rare: error)":
            f"{zipkin}/api/v2/traces?annotationQuery=error&limit=10&endTs={end_ms}",
        "zipkin traces annotationQuery (common)":
            f"{zipkin}/api/v2/traces?annotationQuery=http.method%3DGET&limit=10&endTs={end_ms}",
        "zipkin trace/{id}": f"{zipkin}/api/v2/trace/4e441824ec2b6a44{7:016x}",
        "zipkin services": f"{zipkin}/api/v2/services",
        "zipkin dependencies": f"{zipkin}/api/v2/dependencies?endTs={end_ms}&lookback=86400000",
        "jaeger traces service=reviews limit=20":
            f"{jaeger}/api/traces?service=reviews.default&limit=20&end={end_ms * 1000}&lookback=2d",
    }


# each format: its media type and encoder (its URL: _urls)
FORMATS = {"zipkin_json": ("application/json", zipkin_json.encode_spans),
           "otlp_protobuf": ("application/x-protobuf", otlp_writer.encode_request)}
# Each build's ingest into a fresh collector, same run: what compiling the store and the codecs gains
BUILD_SPANS = 100_000


async def run(args: argparse.Namespace, pid: int, zipkin: str, otlp_url: str, jaeger: str) -> dict[str, object]:
    ingested = _totals()
    sizes: dict[str, object] = {}
    next_trace = 0
    async with _session(args.concurrency) as http:
        await latencies(http, f"{zipkin}/health", 3)
        rss_before = rss_bytes(pid)
        stored = 0
        for size in args.sizes:
            next_trace = await _ingest_formats(http, args.concurrency, pid, _urls(zipkin, otlp_url),
                                               (size - stored) // 2, next_trace, ingested)
            async with http.get(f"{zipkin}/health") as response:
                health = await response.json()
            stored = int(health["spans"])
            rss_after = rss_bytes(pid)
            end_ms = START_US // 1000 + next_trace + 1  # traces start 1 ms apart
            query_ms = {name: await latencies(http, url, args.queries)
                        for name, url in queries(zipkin, jaeger, end_ms).items()}
            sizes[str(stored)] = {
                "rss_bytes_per_span": (rss_after - rss_before) / stored,
                "estimated_bytes_per_span": int(health["bytes"]) / stored,
                "rss_mb_before_after": [rss_before / 2**20, rss_after / 2**20],
                "query_ms_p50_p99": {name: [percentile(values, 0.5), percentile(values, 0.99)]
                                     for name, values in query_ms.items()},
            }
    return {"ingest": _ingest_figures(ingested), "sizes": sizes}


async def run_ingest_only(concurrency: int, pid: int, zipkin: str, otlp_url: str) -> dict[str, object]:
    ingested, urls = _totals(), _urls(zipkin, otlp_url)
    async with _session(concurrency) as http:
        await latencies(http, f"{zipkin}/health", 3)
        # not counted: each format's first requests (imports, the protobuf descriptors' first use)
        warmed = await _ingest_formats(http, concurrency, pid, urls, 10 * BATCH, 0, _totals())
        await _ingest_formats(http, concurrency, pid, urls, BUILD_SPANS // 2, warmed, ingested)
    return {"ingest": _ingest_figures(ingested)}


def _totals() -> dict[str, list[float]]:
    """Per format: spans, CPU seconds, wall seconds, RSS growth in bytes over its ingest."""
    return {name: [0, 0.0, 0.0, 0.0] for name in FORMATS}


def _urls(zipkin: str, otlp_url: str) -> dict[str, str]:
    return {"zipkin_json": f"{zipkin}/api/v2/spans", "otlp_protobuf": f"{otlp_url}/v1/traces"}


def _session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                 timeout=aiohttp.ClientTimeout(total=3600))


async def _ingest_formats(http: aiohttp.ClientSession, concurrency: int, pid: int, urls: dict[str, str],
                          spans: int, next_trace: int, ingested: dict[str, list[float]]) -> int:
    """`spans` spans in each format, added to `ingested`'s totals; the next trace number."""
    for name, (media_type, encode) in FORMATS.items():
        bodies = (encode(batch) for batch in batches(next_trace, spans))
        next_trace += spans // len(HOPS) + 1
        cpu_before, rss_format_before = cpu_seconds([pid]), rss_bytes(pid)
        wall = await ingest(http, urls[name], media_type, bodies, concurrency)
        totals = ingested[name]
        totals[0] += spans
        totals[1] += cpu_seconds([pid]) - cpu_before
        totals[2] += wall
        totals[3] += rss_bytes(pid) - rss_format_before
    return next_trace


def _ingest_figures(ingested: dict[str, list[float]]) -> dict[str, dict[str, float | None]]:
    return {name: {"spans_per_cpu_s": spans / cpu if cpu else None, "spans_per_s": spans / wall,
                   "rss_bytes_per_span": rss / spans}
            for name, (spans, cpu, wall, rss) in ingested.items()}


def _collector(max_spans: int, pure: bool) -> tuple[list[str], dict[str, str], int, int, int]:
    """A `tracemesh collector` command on free ports, its environment, and its Zipkin, OTLP and query ports."""
    zipkin_port, otlp_port, query_port, grpc_port = (free_port() for _ in range(4))
    command = [sys.executable, "-m", "tracemesh_cli.main", "collector", "--zipkin-port", str(zipkin_port),
               "--otlp-port", str(otlp_port), "--query-port", str(query_port), "--otlp-grpc-port", str(grpc_port),
               "--max-spans", str(max_spans), "--max-bytes", "16G"]
    env = {**os.environ, PURE_PYTHON_ENV: "1"} if pure else dict(os.environ)
    return command, env, zipkin_port, otlp_port, query_port


def _print_ingest(figures_by_format: object, build: str) -> None:
    assert isinstance(figures_by_format, dict)
    for name, figures in figures_by_format.items():
        per_cpu = figures["spans_per_cpu_s"]
        print(f"  ingest   {name:<14} {per_cpu or float('nan'):>9.0f} spans per CPU-second "
              f"({figures['spans_per_s']:.0f} spans/s of wall time), {figures['rss_bytes_per_span']:.0f} bytes "
              f"of RSS per span stored ({build})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.collector", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda text: [int(size) for size in text.split(",")], default=[10_000, 100_000],
                        help="stored-span counts to fill the collector to, in increasing order (default 10000,100000)")
    parser.add_argument("--million", action="store_true", help="add 1000000 stored spans (minutes to load, ~2 GB)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--queries", type=int, default=20)
    args = parser.parse_args(argv)
    args.sizes = sorted(set(args.sizes) | ({1_000_000} if args.million else set()))
    command, env, zipkin_port, otlp_port, query_port = _collector(args.sizes[-1] * 2, pure=False)
    with started("collector", command, zipkin_port, env=env) as collector:
        result = asyncio.run(run(args, collector.process.pid, f"http://127.0.0.1:{zipkin_port}",
                                 f"http://127.0.0.1:{otlp_port}", f"http://127.0.0.1:{query_port}"))
    builds = {"compiled": False, "pure Python": True} if BUILD.compiled else {}
    for name, pure in builds.items():
        command, env, zipkin_port, otlp_port, _ = _collector(BUILD_SPANS * 2, pure)
        with started("collector", command, zipkin_port, env=env) as collector:
            result[name] = asyncio.run(run_ingest_only(args.concurrency, collector.process.pid,
                                                       f"http://127.0.0.1:{zipkin_port}", f"http://127.0.0.1:{otlp_port}"))
    print(f"{BATCH}-span batches, {args.concurrency} connections, collector on {sys.executable}, "
          f"build: {BUILD.describe()}")
    _print_ingest(result["ingest"], f"filled to {args.sizes[-1]}")
    for name in builds:
        figures = result[name]
        assert isinstance(figures, dict)
        _print_ingest(figures["ingest"], f"{name}, {BUILD_SPANS} spans into a fresh collector")
    sizes = result["sizes"]
    assert isinstance(sizes, dict)
    for stored, figures in sizes.items():
        print(f"  at {stored} stored spans: {figures['rss_bytes_per_span']:.0f} bytes of RSS per stored span "
              f"(the store's estimate: {figures['estimated_bytes_per_span']:.0f}); queries (n={args.queries}):")
        for name, (p50, p99) in figures["query_ms_p50_p99"].items():
            print(f"    {name:<44} p50 {p50:8.1f} ms   p99 {p99:8.1f} ms")
    save_results("collector", result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
