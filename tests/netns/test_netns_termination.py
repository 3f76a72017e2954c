"""Acceptance for pod termination as Istio's (issue 9): SIGTERM to a sidecar under steady load.

The `caller` pod runs without native sidecars and with holdApplicationUntilProxyStarts (its
`proxy.istio.io/config` annotation), so its app and its proxy are both regular containers and
get SIGTERM together, as the kubelet sends it. Its app calls `target` through the proxy every
20 ms on a keep-alive connection and goes on for LINGER_S after its SIGTERM (finishing its work);
requests also arrive inbound, one of them in flight at the SIGTERM and one keep-alive connection idle.

What pilot-agent promises (pkg/envoy/agent.go terminate()): outbound serves the app until the
drain period (terminationDrainDuration, 5s by default) ends; inbound drains; spans are flushed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from netns_cluster import Cluster
from netns_mesh import Mesh, load_yaml, zipkin_traces
from netns_net import open_connection
from netns_pods import Kubelet, RunningPod, http_status

from tracemesh_sidecar.proxy.termination import DEFAULT_TERMINATION_DRAIN_S

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]

APPS = Path(__file__).with_name("netns_apps.py")
APP_USER = {"runAsUser": 1000, "runAsGroup": 1000}
LINGER_S = 3.0
QUITTER_CONFIG = """holdApplicationUntilProxyStarts: true
proxyMetadata:
  EXIT_ON_ZERO_ACTIVE_CONNECTIONS: "true"
  MINIMUM_DRAIN_DURATION: 1s
"""
# The drain period plus room for a loaded machine: the bound on the exit, not a measure of it.
EXIT_BOUND_S = DEFAULT_TERMINATION_DRAIN_S + 25.0


def _pod(app: str, command: list[str], annotations: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{app}-netns", "namespace": "default", "labels": {"app": app, "version": "v1"},
                         "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "netns-apps", "command": ["python", str(APPS), *command],
                                     "ports": [{"containerPort": 9080}], "securityContext": APP_USER}]}}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(cluster: Cluster, kubelet: Kubelet) -> AsyncIterator[Mesh]:
    built = Mesh(cluster, kubelet, load_yaml("samples/bookinfo/meshconfig.yaml")["spec"])
    built.control.apply_telemetry(load_yaml("samples/bookinfo/telemetry.yaml"))
    built.add_workload(_pod("caller", ["caller", "9080", "http://target:9080/anything", str(LINGER_S)],
                            {"sidecar.istio.io/nativeSidecar": "false",
                             "proxy.istio.io/config": "holdApplicationUntilProxyStarts: true"}))
    built.add_workload(_pod("quitter", ["caller", "9080", "http://target:9080/anything", str(LINGER_S)],
                            {"sidecar.istio.io/nativeSidecar": "false", "proxy.istio.io/config": QUITTER_CONFIG}))
    built.add_workload(_pod("native", ["caller", "9080", "http://target:9080/anything", str(LINGER_S)], {}))
    built.add_workload(_pod("target", ["http", "9080"], {}))
    built.add_service("caller", "default", [(9080, 9080)], {"app": "caller"})
    built.add_service("target", "default", [(9080, 9080)], {"app": "target"})
    try:
        await built.start()
        yield built
    finally:
        await built.close()


def _read_calls(log: Path) -> list[dict[str, Any]]:
    """The caller app's calls, as it printed them (one JSON line each)."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


async def _under_load(mesh: Mesh, app: str) -> tuple[RunningPod, Path, Path]:
    """`app`'s pod once its calls are being answered, with its proxy's log and its app's call log."""
    pod = next(pod for pod in mesh.workloads if pod.net.labels["app"] == app)
    proxy_log, calls_log = pod.processes["istio-proxy"].log, pod.processes["app"].log
    async with asyncio.timeout(30):
        while sum(1 for call in _read_calls(calls_log) if call.get("status") == 200) < 20:
            await asyncio.sleep(0.2)
    return pod, proxy_log, calls_log


def _logged_at(log: str, message: str) -> float:
    """Wall-clock time of the first sidecar log line containing `message` (logging's asctime, local time)."""
    line = next(line for line in log.splitlines() if message in line)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _unreported(calls: list[dict[str, Any]], client_spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls no CLIENT span falls within (a span's timestamp: when the proxy took the request)."""
    stamps = sorted(int(span["timestamp"]) for span in client_spans)
    return [call for call in calls
            if not any(call["start"] * 1e6 - 1000 <= stamp <= call["end"] * 1e6 + 1000 for stamp in stamps)]


async def _spans_of(zipkin: tuple[aiohttp.ClientSession, str], service: str, calls: list[dict[str, Any]],
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`service`'s CLIENT and SERVER spans at the collector, once every call of `calls` has its CLIENT span
    (or after 20s: the caller asserts)."""
    session, url = zipkin
    deadline = time.monotonic() + 20
    while True:
        spans = [span for trace in await zipkin_traces(session, url, service, limit=100_000)
                 for span in trace if span["localEndpoint"]["serviceName"] == service]
        client = [span for span in spans if span.get("kind") == "CLIENT"]
        if not _unreported(calls, client) or time.monotonic() > deadline:
            return client, [span for span in spans if span.get("kind") == "SERVER"]
        await asyncio.sleep(0.5)


async def _calls_since(calls_log: Path, since: float, zipkin: tuple[aiohttp.ClientSession, str], service: str,
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The app's calls started after `since`, and those of them answered without a CLIENT span at the collector."""
    late = [call for call in _read_calls(calls_log) if call["start"] >= since]
    answered = [call for call in late if "status" in call]
    client_spans, _ = await _spans_of(zipkin, service, answered)
    return late, _unreported(answered, client_spans)


async def _send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> None:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: caller:9080\r\n\r\n".encode())
    await writer.drain()


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
    status_line, *lines = head.decode("latin-1").strip().split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 15)
    return int(status_line.split()[1]), headers


async def test_sigterm_under_load_refuses_no_outbound_call_cuts_nothing_and_flushes_spans(
        mesh: Mesh, kubelet: Kubelet, zipkin: tuple[aiohttp.ClientSession, str]) -> None:
    caller, proxy_log, calls_log = await _under_load(mesh, "caller")
    node, address = mesh.cluster.node, caller.net.ip
    idle = await open_connection(node, address, 9080)
    await _send(*idle, "/anything")
    assert (await _response(idle[0]))[0] == 200  # a keep-alive connection, now idle
    in_flight = await open_connection(node, address, 9080)
    await _send(*in_flight, "/slow?delay=1.5")
    await asyncio.sleep(0.5)  # reached the app, which answers 1s after the SIGTERM, well before it exits

    sigterm_at = time.time()
    proxy = kubelet.terminate(caller, "istio-proxy")
    app = kubelet.terminate(caller, "app")

    async with asyncio.timeout(10):  # the kubelet's readiness probe fails from the start of the drain on
        while await http_status(node, address, 15021, "/healthz/ready") != 503:
            await asyncio.sleep(0.05)
    with pytest.raises(OSError):  # inbound drains: no new connection is taken
        await open_connection(node, address, 9080, timeout_s=5)
    await _send(*idle, "/anything")  # the idle connection's next request
    idle_status, idle_headers = await _response(idle[0])
    slow_status, slow_headers = await _response(in_flight[0])
    for _, writer in (idle, in_flight):
        writer.close()

    exit_code = await asyncio.to_thread(proxy.wait, EXIT_BOUND_S)
    app_code = await asyncio.to_thread(app.wait, 30)
    exited_at = time.time()
    log = proxy_log.read_text()
    drain_over = _logged_at(log, "termination drain over")
    calls = _read_calls(calls_log)
    during = [call for call in calls if sigterm_at <= call["start"] and call["end"] <= drain_over]
    failed = [call for call in during if call.get("status") != 200]
    # Answered after the SIGTERM: each one's CLIENT span must have been flushed before the proxy exited.
    answered_late = [call for call in calls if "status" in call and call["start"] >= sigterm_at]

    client_spans, server_spans = await _spans_of(zipkin, "caller.default", answered_late)
    server_paths = [span.get("tags", {}).get("http.url", "") for span in server_spans]

    print(f"\ncaller under load: {len(during)} outbound calls during the drain ({len(failed)} failed), "
          f"{len(answered_late)} answered after SIGTERM, {len(_unreported(answered_late, client_spans))} of them "
          f"without a CLIENT span at the collector; "
          f"proxy exit {exit_code} {exited_at - sigterm_at:.1f}s after SIGTERM (drain over at "
          f"+{drain_over - sigterm_at:.1f}s); in-flight inbound {slow_status} {slow_headers.get('connection')}, "
          f"idle keep-alive's next {idle_status} {idle_headers.get('connection')}")
    assert exit_code == 0 and app_code == 0, log[-3000:]
    assert "draining inbound" in log and "outbound still serving" in log
    assert len(during) >= 5, f"the app made {len(during)} calls while the proxy drained: no load to speak of"
    assert failed == [], f"outbound calls refused or failed during the drain: {failed[:5]}"
    assert (slow_status, slow_headers.get("connection")) == (200, "close")  # in flight: answered, then closed
    assert (idle_status, idle_headers.get("connection")) == (200, "close")  # idle: answered, told to close
    assert _unreported(answered_late, client_spans) == []  # every call answered while draining was reported
    assert sum("/slow" in path for path in server_paths) == 1


async def test_exit_on_zero_active_connections_waits_for_the_apps_last_connection(
        mesh: Mesh, kubelet: Kubelet, zipkin: tuple[aiohttp.ClientSession, str]) -> None:
    """EXIT_ON_ZERO_ACTIVE_CONNECTIONS=true: past MINIMUM_DRAIN_DURATION (1s) the proxy stays while its app, still
    working for LINGER_S (3s), keeps a connection open, and stops once the app has gone."""
    quitter, proxy_log, calls_log = await _under_load(mesh, "quitter")
    sigterm_at = time.time()
    proxy = kubelet.terminate(quitter, "istio-proxy")
    app = kubelet.terminate(quitter, "app")
    exit_code = await asyncio.to_thread(proxy.wait, EXIT_BOUND_S)
    app_code = await asyncio.to_thread(app.wait, 30)
    log = proxy_log.read_text()
    drain_over = _logged_at(log, "termination drain over")
    late, unreported = await _calls_since(calls_log, sigterm_at, zipkin, "quitter.default")
    print(f"\nquitter: {len(late)} outbound calls after SIGTERM ({sum('status' not in c for c in late)} refused), "
          f"the last ending at +{max(c['end'] for c in late) - sigterm_at:.1f}s; drain over at "
          f"+{drain_over - sigterm_at:.1f}s, exit {exit_code}")
    assert exit_code == 0 and app_code == 0, log[-3000:]
    assert "until no connection is active (EXIT_ON_ZERO_ACTIVE_CONNECTIONS)" in log
    assert len(late) >= 5 and all(call.get("status") == 200 for call in late), late[-5:]
    # It outlasted the minimum while the app was still calling (the log's time is to the millisecond).
    assert drain_over + 0.001 >= max(call["end"] for call in late)
    assert unreported == []


async def test_a_native_sidecar_drains_from_its_pre_stop_hook_and_stops_at_its_sigterm(
        mesh: Mesh, kubelet: Kubelet, zipkin: tuple[aiohttp.ClientSession, str]) -> None:
    """Native sidecars (Kubernetes >= 1.29): at pod deletion the kubelet runs the proxy's preStop hook (POST /drain)
    while the app gets SIGTERM; the proxy's own SIGTERM comes once the app has exited (Istio's template and
    agent.go case 4). The app's calls during its LINGER_S are all served; then the proxy stops without a drain
    period of its own."""
    native, proxy_log, calls_log = await _under_load(mesh, "native")
    node, address = mesh.cluster.node, native.net.ip
    deleted_at = time.time()
    hook = kubelet.pre_stop(native, "istio-proxy")
    app = kubelet.terminate(native, "app")
    assert hook is not None and hook.returncode == 0, hook
    with pytest.raises(OSError):  # inbound drained by the hook
        await open_connection(node, address, 9080, timeout_s=5)
    app_code = await asyncio.to_thread(app.wait, 30)
    sigterm_at = time.time()
    exit_code = await asyncio.to_thread(kubelet.terminate(native, "istio-proxy").wait, EXIT_BOUND_S)
    log = proxy_log.read_text()
    late, unreported = await _calls_since(calls_log, deleted_at, zipkin, "native.default")
    print(f"\nnative: {len(late)} outbound calls after the preStop hook "
          f"({sum(c.get('status') != 200 for c in late)} failed); app exit {app_code}, proxy exit {exit_code} "
          f"{time.time() - sigterm_at:.1f}s after its SIGTERM")
    assert app_code == 0 and exit_code == 0, log[-3000:]
    assert len(late) >= 5 and all(call.get("status") == 200 for call in late), late[-5:]
    assert "already drained: stopping now" in log and "termination drain:" not in log
    assert unreported == []
