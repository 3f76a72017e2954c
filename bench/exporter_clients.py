"""`python -m bench exporter_clients`: the two candidate OTLP/gRPC clients for the sidecar, side by side.

The sidecar's gRPC exporter could be grpcio's aio API or unary gRPC over h2 on the proxy's loop
(tracemesh_sidecar/export/grpc_client.py says which was chosen and why). Each candidate runs in a fresh
process that first imports what a sidecar imports and runs uvloop, as a sidecar does, then makes
CALLS Export calls of one 512-span batch to the embedded collector's OTLP/gRPC port. Reported: RSS
the client adds over that sidecar baseline (peak), and CPU per call (all threads, encoding excluded).
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench.processes import free_port, save_results, started

CALLS = 200
BATCH = 512

# Runs in the measured process: argv = candidate, collector port.
_PROBE = r"""
import asyncio, json, sys, time
import uvloop
import tracemesh_cli.main, tracemesh_sidecar.proxy, tracemesh_sidecar.export  # what a sidecar has loaded
from tracemesh_sidecar.export.grpc_wire import EXPORT_PATH
from tracemesh_sidecar.spans import otlp_writer
from tracemesh_sidecar.spans.model import Endpoint, Span

def memory(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024

def spans():
    return [Span(trace_id=f"{n + 1:032x}", id=f"{n + 1:016x}", name="reviews.default.svc.cluster.local:9080/*",
                 kind="CLIENT", timestamp=1_763_700_000_000_000 + n, duration=1000,
                 local_endpoint=Endpoint(service_name="productpage.default", ipv4="10.0.0.1"),
                 tags={"http.status_code": "200",
                       "upstream_cluster": "outbound|9080||reviews.default.svc.cluster.local"})
            for n in range(BATCH)]

async def main(candidate, port):
    body = otlp_writer.encode_request(spans())
    baseline = memory("VmRSS")
    if candidate == "grpcio-aio":
        import grpc.aio
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        export = channel.unary_unary(EXPORT_PATH)
        async def call():
            await export(body, timeout=5.0, metadata=(("x-tenant", "a"),))
    else:
        from tracemesh_sidecar.config.model import ProviderConfig
        from tracemesh_sidecar.export.grpc_client import GrpcCollectorClient
        from tracemesh_sidecar.export.wire import wire_format
        provider = ProviderConfig(name="otel", kind="opentelemetry", service="127.0.0.1", port=port, path="",
                                  transport="grpc", headers=(("x-tenant", "a"),))
        client = GrpcCollectorClient(provider, wire_format(provider, {}))
        async def call():
            assert (await client.export(body)).sent
    await call()  # connected, warmed up
    started = time.process_time()
    for _ in range(CALLS):
        await call()
    cpu = time.process_time() - started
    print(json.dumps({"candidate": candidate, "baseline_rss_mb": baseline, "peak_rss_mb": memory("VmHWM"),
                      "rss_added_mb": memory("VmHWM") - baseline, "cpu_ms_per_call": cpu * 1000 / CALLS,
                      "message_kb": len(body) / 1024}))

CALLS, BATCH = int(sys.argv[3]), int(sys.argv[4])
uvloop.run(main(sys.argv[1], int(sys.argv[2])))
"""


def measure(candidate: str, port: int) -> dict[str, float | str]:
    output = subprocess.run([sys.executable, "-c", _PROBE, candidate, str(port), str(CALLS), str(BATCH)],
                            capture_output=True, text=True, check=True).stdout
    result: dict[str, float | str] = json.loads(output.splitlines()[-1])
    return result


def main(argv: list[str]) -> int:
    otlp_grpc, others = free_port(), [str(free_port()) for _ in range(3)]
    collector = [sys.executable, "-m", "tracemesh_cli.main", "collector", "--otlp-grpc-port", str(otlp_grpc),
                 "--zipkin-port", others[0], "--otlp-port", others[1], "--query-port", others[2]]
    with started("collector", collector, otlp_grpc):
        results = [measure(candidate, otlp_grpc) for candidate in ("h2", "grpcio-aio")]
    print(f"{CALLS} Export calls of {BATCH} spans ({results[0]['message_kb']:.0f} KB each) from a process that "
          "has loaded what a sidecar loads, under uvloop:")
    print(f"{'client':<12} {'sidecar baseline RSS MB':>24} {'peak RSS MB':>12} {'added MB':>9} {'CPU ms/call':>12}")
    for r in results:
        print(f"{r['candidate']:<12} {r['baseline_rss_mb']:>24.1f} {r['peak_rss_mb']:>12.1f} "
              f"{r['rss_added_mb']:>9.1f} {r['cpu_ms_per_call']:>12.2f}")
    save_results("exporter_clients", results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
