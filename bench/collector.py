"""The embedded collector: ingest rate, memory per stored span, and query latency at 100k stored spans.

    python -m bench.collector [--spans 100000] [--concurrency 4] [--queries 20]

One `tracemesh collector` process. Half the spans arrive as Zipkin v2 JSON on /api/v2/spans and
half as OTLP protobuf on /v1/traces, both in 100-span batches of mesh-shaped traces (Bookinfo's
seven spans with a sidecar's tags), from `--concurrency` connections; each rate is spans per
second of wall time for its half. Memory is the collector's RSS growth over what it had before
ingest, divided by the spans it then holds (next to the store's own estimate, which its byte bound
uses). Then each query runs `--queries` times against the full store: p50 / p99.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence

import aiohttp

from bench.processes import free_port, percentile, save_results, started
from tracemesh_sidecar.spans import otlp, zipkin_json
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
        spans.append(Span(
            trace_id=trace_id, id=f"{number:08x}{index + 1:08x}",
            parent_id=f"{number:08x}{index:08x}" if index else None,
            name=f"{target}.default.svc.cluster.local:9080/*", kind="CLIENT" if callee else "SERVER",
            timestamp=start + index * 100, duration=20_000 - index * 1000,
            local_endpoint=Endpoint(f"{service}.default", f"10.244.0.{index}"),
            remote_endpoint=Endpoint(f"{callee}.default", f"10.244.0.{index + 10}", None, 9080) if callee else None,
            tags=tags))
    return spans


def batches(first_trace: int, spans: int) -> list[list[Span]]:
    flat = [span for number in range(first_trace, first_trace + spans // len(HOPS) + 1) for span in mesh_trace(number)]
    return [flat[start:start + BATCH] for start in range(0, spans, BATCH)]


async def ingest(http: aiohttp.ClientSession, url: str, media_type: str, bodies: Sequence[bytes],
                 concurrency: int) -> float:
    """Seconds to post every body, `concurrency` at a time."""
    queue = list(reversed(bodies))

    async def worker() -> None:
        while queue:
            body = queue.pop()
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


async def run(args: argparse.Namespace, pid: int, zipkin: str, otlp_url: str, jaeger: str) -> dict[str, object]:
    half = args.spans // 2
    zipkin_bodies = [zipkin_json.encode_spans(batch) for batch in batches(0, half)]
    otlp_bodies = [otlp.encode_request(batch) for batch in batches(half // len(HOPS) + 1, half)]
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as http:
        await latencies(http, f"{zipkin}/health", 3)
        rss_before = rss_bytes(pid)
        zipkin_s = await ingest(http, f"{zipkin}/api/v2/spans", "application/json", zipkin_bodies, args.concurrency)
        otlp_s = await ingest(http, f"{otlp_url}/v1/traces", "application/x-protobuf", otlp_bodies, args.concurrency)
        async with http.get(f"{zipkin}/health") as response:
            health = await response.json()
        rss_after = rss_bytes(pid)
        end_ms = START_US // 1000 + args.spans  # after the last trace's start
        queries: dict[str, Callable[[], str]] = {
            "zipkin traces serviceName=ratings limit=10": lambda: (
                f"{zipkin}/api/v2/traces?serviceName=ratings.default&limit=10&endTs={end_ms}&lookback=86400000"),
            "zipkin traces (no filter) limit=10": lambda: (
                f"{zipkin}/api/v2/traces?limit=10&endTs={end_ms}&lookback=86400000"),
            "zipkin traces annotationQuery limit=10": lambda: (
                f"{zipkin}/api/v2/traces?annotationQuery=http.status_code%3D503&limit=10&endTs={end_ms}"),
            "zipkin trace/{id}": lambda: f"{zipkin}/api/v2/trace/4e441824ec2b6a44{7:016x}",
            "zipkin services": lambda: f"{zipkin}/api/v2/services",
            "zipkin dependencies": lambda: f"{zipkin}/api/v2/dependencies?endTs={end_ms}&lookback=86400000",
            "jaeger traces service=reviews limit=20": lambda: (
                f"{jaeger}/api/traces?service=reviews.default&limit=20&end={end_ms * 1000}&lookback=2d"),
        }
        query_ms = {name: await latencies(http, url(), args.queries) for name, url in queries.items()}
    stored = int(health["spans"])
    return {
        "spans_stored": stored,
        "zipkin_json_spans_per_s": half / zipkin_s,
        "otlp_protobuf_spans_per_s": half / otlp_s,
        "rss_bytes_per_span": (rss_after - rss_before) / stored,
        "estimated_bytes_per_span": int(health["bytes"]) / stored,
        "rss_mb_before_after": [rss_before / 2**20, rss_after / 2**20],
        "query_ms_p50_p99": {name: [percentile(values, 0.5), percentile(values, 0.99)]
                             for name, values in query_ms.items()},
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.collector", description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--queries", type=int, default=20)
    args = parser.parse_args(argv)
    zipkin_port, otlp_port, query_port, grpc_port = (free_port() for _ in range(4))
    command = [sys.executable, "-m", "tracemesh_cli.main", "collector", "--zipkin-port", str(zipkin_port),
               "--otlp-port", str(otlp_port), "--query-port", str(query_port), "--otlp-grpc-port", str(grpc_port),
               "--max-spans", str(args.spans * 2), "--max-bytes", "4G"]
    with started("collector", command, zipkin_port) as collector:
        result = asyncio.run(run(args, collector.process.pid, f"http://127.0.0.1:{zipkin_port}",
                                 f"http://127.0.0.1:{otlp_port}", f"http://127.0.0.1:{query_port}"))
    print(f"{result['spans_stored']} spans stored, {BATCH}-span batches, {args.concurrency} connections")
    print(f"  ingest   Zipkin v2 JSON   {result['zipkin_json_spans_per_s']:>9.0f} spans/s")
    print(f"  ingest   OTLP protobuf    {result['otlp_protobuf_spans_per_s']:>9.0f} spans/s")
    print(f"  memory   {result['rss_bytes_per_span']:.0f} bytes of RSS per stored span "
          f"(the store's estimate: {result['estimated_bytes_per_span']:.0f})")
    print(f"  queries at {result['spans_stored']} stored spans (n={args.queries}):")
    timings = result["query_ms_p50_p99"]
    assert isinstance(timings, dict)
    for name, (p50, p99) in timings.items():
        print(f"    {name:<42} p50 {p50:8.1f} ms   p99 {p99:8.1f} ms")
    save_results("collector", result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
