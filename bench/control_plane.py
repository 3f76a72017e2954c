"""Control-plane latency: webhook mutation and config push.

    python -m bench.control_plane [--reviews 1000] [--subscribers 1000] [--rounds 5]

1. Mutation: `--reviews` AdmissionReview v1 requests, one after another over one keep-alive
   HTTPS connection to the real webhook server (generated CA), p50/p99 of the round trip;
   and the pure `inject()` alone. Target: p99 < 5 ms.
2. Push: the real discovery server with `--subscribers` pods, each with an open long-poll
   from a second process (so the subscribers' work does not queue behind the server's); per
   round every pod's config changes at once (a mesh-wide Telemetry change) and each
   subscriber's latency is from the start of that change to its arrival. Target: p99 < 1 s.
   The subscribers read the whole document but do not parse it (a real sidecar parses its
   own, in its own process); both processes use CLOCK_MONOTONIC, shared system-wide.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import resource
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.processes import percentile
from tracemesh_operator.discovery import server as discovery_server
from tracemesh_operator.discovery.hub import ConfigHub
from tracemesh_operator.injection import certs, webhook
from tracemesh_operator.injection.mutation import InjectionSettings, Mutation, inject
from tracemesh_sidecar.config import NodeIdentity, ProviderConfig, ProxyConfig, TracingConfig, TracingPolicy

NAMESPACES = 100


def summary(values_ms: list[float]) -> str:
    return (f"p50 {percentile(values_ms, 0.50):7.2f} ms   p99 {percentile(values_ms, 0.99):7.2f} ms   "
            f"max {max(values_ms):7.2f} ms   (n={len(values_ms)})")


# -- 1. mutation ------------------------------------------------------------------------------------


def review(index: int) -> dict[str, Any]:
    pod = {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"generateName": f"reviews-v{index % 3 + 1}-6b746f74dc-", "namespace": "bookinfo",
                     "labels": {"app": "reviews", "version": f"v{index % 3 + 1}",
                                "pod-template-hash": "6b746f74dc"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": True,
                                          "name": f"reviews-v{index % 3 + 1}-6b746f74dc", "uid": str(uuid.uuid4())}]},
        "spec": {"serviceAccountName": "bookinfo-reviews",
                 "volumes": [{"name": "kube-api-access-x", "projected": {"sources": []}}],
                 "containers": [{"name": "reviews", "image": "bookinfo/reviews:1",
                                 "ports": [{"containerPort": 9080, "protocol": "TCP"}],
                                 "env": [{"name": "LOG_DIR", "value": "/tmp/logs"}]}]},
    }
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
            "request": {"uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "namespace": "bookinfo", "operation": "CREATE", "object": pod, "oldObject": None,
                        "dryRun": False, "userInfo": {"username": "system:serviceaccount:kube-system:replicaset"}}}


async def bench_mutation(count: int) -> None:
    settings = InjectionSettings()
    labels = {"istio-injection": "enabled"}
    bodies = [review(index) for index in range(count)]
    core_ms = []
    for body in bodies:
        started = time.perf_counter()
        outcome = inject(body["request"]["object"], labels, settings)
        core_ms.append((time.perf_counter() - started) * 1000)
        assert isinstance(outcome, Mutation)

    with tempfile.TemporaryDirectory() as work:
        certificate = certs.load_or_create(None, Path(work))
        app = webhook.create_app(lambda name: labels, settings)
        runner = await webhook.start_server(app, certs.server_ssl_context(certificate), "127.0.0.1", 0)
        url = f"https://localhost:{runner.addresses[0][1]}/inject"
        trust = ssl.create_default_context(cadata=certificate.ca_pem.decode())
        encoded = [json.dumps(body).encode() for body in bodies]
        round_trip_ms = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust, limit=1)) as session:
            for index, data in enumerate([encoded[0], *encoded]):  # the first warms up the TLS connection
                started = time.perf_counter()
                async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as response:
                    answer = await response.json()
                elapsed = (time.perf_counter() - started) * 1000
                assert answer["response"]["allowed"] and base64.b64decode(answer["response"]["patch"])
                if index:
                    round_trip_ms.append(elapsed)
        await runner.cleanup()
    print(f"mutation, inject() alone:            {summary(core_ms)}")
    print(f"mutation, AdmissionReview over HTTPS: {summary(round_trip_ms)}   target p99 < 5 ms")


# -- 2. config push ---------------------------------------------------------------------------------


def pod_config(index: int, sampling: float) -> ProxyConfig:
    policy = TracingPolicy(provider="zipkin", sampling_percentage=sampling)
    return ProxyConfig(
        node=NodeIdentity(pod_name=f"pod-{index}", namespace=f"ns-{index % NAMESPACES}", pod_ip="10.0.0.1",
                          canonical_service=f"svc-{index % 50}", labels={"app": f"svc-{index % 50}", "version": "v1"}),
        tracing=TracingConfig(client=policy, server=policy),
        providers=(ProviderConfig(name="zipkin", kind="zipkin", service="zipkin.istio-system.svc.cluster.local",
                                  port=9411, path="/api/v2/spans"),),
    )


async def subscribe(session: aiohttp.ClientSession, base: str, index: int, arrivals: list[list[float]]) -> None:
    """One simulated sidecar: long-poll, record when each new version arrives, ack it in the next poll."""
    url = f"{base}/v1/proxy-config/ns-{index % NAMESPACES}/pod-{index}"
    held = ""
    while True:
        async with session.get(url, params={"version": held, "applied": held, "wait": "60s"}) as response:
            if response.status != 200:
                continue
            await response.read()
            arrived = time.monotonic()
            version = response.headers["X-Tracemesh-Version"]
        if held:
            arrivals[index].append(arrived)
        held = version


async def subscriber_process(port: int, count: int, rounds: int) -> None:
    arrivals: list[list[float]] = [[] for _ in range(count)]
    base = f"http://127.0.0.1:{port}"
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=90)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(subscribe(session, base, index, arrivals)) for index in range(count)]
        while min(len(times) for times in arrivals) < rounds:
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(arrivals), flush=True)


async def all_synced(hub: ConfigHub, count: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = hub.connected()
        if len(rows) == count and all(row.synced and row.connected for row in rows):
            await asyncio.sleep(0.2)  # the acking polls are open again
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"subscribers not all synced after {timeout_s:g}s")


async def bench_push(count: int, rounds: int) -> None:
    hub = ConfigHub()
    keys = [f"ns-{index % NAMESPACES}/pod-{index}" for index in range(count)]
    for index, key in enumerate(keys):
        hub.set(key, pod_config(index, 1.0))
    runner = await discovery_server.start_server(hub, "127.0.0.1", 0)
    port = discovery_server.bound_port(runner)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.control_plane", "--subscriber-process", str(port), str(count), str(rounds),
        stdout=asyncio.subprocess.PIPE)
    changes: list[float] = []
    spread_ms: list[float] = []
    try:
        for round_index in range(rounds):
            await all_synced(hub, count)
            sampling = 100.0 if round_index % 2 == 0 else 1.0
            started = time.monotonic()
            changes.append(started)
            for index, key in enumerate(keys):
                hub.set(key, pod_config(index, sampling))
            spread_ms.append((time.monotonic() - started) * 1000)
        output, _ = await asyncio.wait_for(child.communicate(), 120)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    arrivals: list[list[float]] = json.loads(output)
    latencies_ms = [(times[round_index] - changes[round_index]) * 1000
                    for times in arrivals for round_index in range(rounds)]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    await runner.cleanup()
    print(f"push, {count} pods changed at once (hub.set of all: median {statistics.median(spread_ms):.1f} ms)")
    print(f"push, change -> subscriber holds it:  {summary(latencies_ms)}   target p99 < 1 s")
    print(f"push, {rounds} rounds x {count} subscribers; server process peak RSS {rss_mb:.0f} MB "
          "(hub, server, webhook bench, interpreter)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.control_plane", description=__doc__.split("\n")[0])
    parser.add_argument("--reviews", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--subscriber-process", nargs=3, type=int, metavar=("PORT", "COUNT", "ROUNDS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.subscribers + 256)), hard))
    if args.subscriber_process:
        asyncio.run(subscriber_process(*args.subscriber_process))
        return 0
    asyncio.run(bench_mutation(args.reviews))
    asyncio.run(bench_push(args.subscribers, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
