"""`tracemesh demo` end to end: real collector, six real sidecars, real Bookinfo, the ingress gateway in front,
on free loopback ports.

The traces are read back through the backends' own APIs (Zipkin's and Jaeger's) with code
independent of the demo's, and checked with the shared Bookinfo trace-shape check. Ctrl-C must
leave no process behind.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tracemesh_bookinfo.trace_shape import check_bookinfo_trace, inspect_bookinfo_trace
from tracemesh_cli.demo.ports import pick_free
from tracemesh_collector.jaeger_json import trace_from_jaeger
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.spans.zipkin_json import span_from_zipkin_dict

REQUESTS = 20
RUNNING = "Running; press Ctrl-C to stop."
SAMPLES = Path(__file__).resolve().parents[2] / "samples/bookinfo"


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    port: int
    gateway: int
    zipkin: int
    otlp: int
    query: int
    otlp_grpc: int
    output: str = ""


def read_until(demo: Demo, marker: str, timeout_s: float = 90.0) -> str:
    """Demo output up to the line holding `marker`; fails with the output so far if it never comes."""
    assert demo.process.stdout is not None
    fd = demo.process.stdout.fileno()  # read the pipe unbuffered, so select() sees everything not yet read
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while marker not in demo.output:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} within {timeout_s} s; output:\n{demo.output}"
        if selector.select(remaining):
            chunk = os.read(fd, 65536)
            assert chunk, f"the demo exited ({demo.process.wait()}) before {marker!r}; output:\n{demo.output}"
            demo.output += chunk.decode(errors="replace")
    return demo.output


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def demo_env(tmp_path: Path) -> dict[str, str]:
    """The demo keeps its logs when something fails: keep them in the test's directory, not in /tmp."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp_path)}


@contextmanager
def demo_running(tmp_path: Path, *flags: str) -> Iterator[Demo]:
    """Runs `tracemesh demo` until the block ends, then presses Ctrl-C and checks that nothing is left."""
    port, gateway, zipkin, otlp, query, otlp_grpc = pick_free(6)
    command = [sys.executable, "-m", "tracemesh_cli.main", "demo", "--port", str(port), "--gateway-port", str(gateway),
               "--zipkin-port", str(zipkin), "--otlp-port", str(otlp), "--query-port", str(query),
               "--otlp-grpc-port", str(otlp_grpc), *flags]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=demo_env(tmp_path))
    demo = Demo(process, port, gateway, zipkin, otlp, query, otlp_grpc)
    try:
        yield demo
        children = descendants(process.pid)
        assert len(children) == 14, children  # the collector, six apps, six sidecars, the gateway
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 130
        deadline = time.monotonic() + 5
        while not all(gone(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in children if not gone(pid)] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def assert_bookinfo_traces(traces: list[list[Span]]) -> None:
    """Every trace rooted at the ingress gateway: 7 spans when reviews v1 answered, 9 for v2 and v3."""
    assert len(traces) == REQUESTS
    problems = {trace[0].trace_id: check_bookinfo_trace(trace, ingress_gateway=True) for trace in traces}
    assert {trace_id: found for trace_id, found in problems.items() if found} == {}
    assert all(len(trace) in (7, 9) for trace in traces)
    assert {inspect_bookinfo_trace(trace, ingress_gateway=True).reviews_version for trace in traces} == \
        {"v1", "v2", "v3"}


@contextmanager
def collector_running() -> Iterator[tuple[int, int, int, int]]:
    """`tracemesh collector` on free ports (Zipkin, OTLP/HTTP, Jaeger query, OTLP/gRPC), outliving the demos run
    against it."""
    zipkin, otlp, query, otlp_grpc = pick_free(4)
    process = subprocess.Popen([sys.executable, "-m", "tracemesh_cli.main", "collector", "--zipkin-port", str(zipkin),
                                "--otlp-port", str(otlp), "--query-port", str(query),
                                "--otlp-grpc-port", str(otlp_grpc)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get_json(f"http://127.0.0.1:{zipkin}/api/v2/services")
                get_json(f"http://127.0.0.1:{query}/api/services")
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "the collector did not start"
                time.sleep(0.1)
        yield zipkin, otlp, query, otlp_grpc
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_demo_once_then_zipkin_api_returns_every_trace_complete(tmp_path: Path) -> None:
    """The acceptance sequence: `tracemesh demo --requests 20 --once`, then GET /api/v2/traces on the collector."""
    with collector_running() as (zipkin, otlp, query, otlp_grpc):
        port, gateway = pick_free(2)
        result = subprocess.run(
            [sys.executable, "-m", "tracemesh_cli.main", "demo", "--requests", str(REQUESTS), "--once",
             "--external-collector", "--port", str(port), "--gateway-port", str(gateway), "--zipkin-port", str(zipkin),
             "--otlp-port", str(otlp), "--query-port", str(query), "--otlp-grpc-port", str(otlp_grpc)],
            capture_output=True, text=True, timeout=120, env=demo_env(tmp_path))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"traces: {REQUESTS}/{REQUESTS} complete" in result.stdout
        assert f"GATEWAY_URL=127.0.0.1:{gateway}" in result.stdout
        assert f"sent {REQUESTS} requests to http://127.0.0.1:{gateway}/productpage" in result.stdout
        # the tree, rooted at the gateway
        assert "router outbound|9080||productpage.default.svc.cluster.local; egress  CLIENT" in result.stdout
        body = get_json(f"http://127.0.0.1:{zipkin}/api/v2/traces?serviceName=productpage.default&limit=20")
        assert_bookinfo_traces([[span_from_zipkin_dict(item) for item in trace] for trace in body])


@pytest.mark.parametrize(("mesh_config", "provider", "url"), [
    # istio.io's Jaeger task as written: provider `jaeger`, opentelemetry to jaeger-collector:4317, no `http`
    ("meshconfig-jaeger-task.yaml", "jaeger", "grpc://127.0.0.1:{otlp_grpc}"),
    # Istio's otelcollector test, its HTTP variant: `http.path: "v1/traces"` on 4318
    ("meshconfig-otel-http.yaml", "test-otel-http", "http://127.0.0.1:{otlp}/v1/traces"),
])
def test_demo_once_with_istios_opentelemetry_providers_then_jaeger_api_returns_every_trace(
        tmp_path: Path, mesh_config: str, provider: str, url: str) -> None:
    """`tracemesh demo --requests 20 --once --mesh-config FILE --provider NAME`, then GET /api/traces."""
    with collector_running() as (zipkin, otlp, query, otlp_grpc):
        port, gateway = pick_free(2)
        result = subprocess.run(
            [sys.executable, "-m", "tracemesh_cli.main", "demo", "--requests", str(REQUESTS), "--once",
             "--mesh-config", str(SAMPLES / mesh_config), "--provider", provider, "--port", str(port),
             "--gateway-port", str(gateway),
             "--zipkin-port", str(zipkin), "--otlp-port", str(otlp), "--query-port", str(query),
             "--otlp-grpc-port", str(otlp_grpc)], capture_output=True, text=True, timeout=120, env=demo_env(tmp_path))
        assert result.returncode == 0, result.stdout + result.stderr
        expected = url.format(otlp=otlp, otlp_grpc=otlp_grpc)
        assert f"tracing to provider {provider!r} (opentelemetry, {expected})" in result.stdout
        assert f"traces: {REQUESTS}/{REQUESTS} complete" in result.stdout
        body = get_json(f"http://127.0.0.1:{query}/api/traces?service=productpage.default&limit=20")
    assert_bookinfo_traces([trace_from_jaeger(trace) for trace in body["data"]])


def test_demo_with_jaeger_provider_sends_otlp_and_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    with demo_running(tmp_path, "--requests", str(REQUESTS), "--provider", "jaeger") as demo:
        output = read_until(demo, RUNNING)
        assert f"GATEWAY_URL=127.0.0.1:{demo.gateway}" in output
        assert f"sent {REQUESTS} requests to http://127.0.0.1:{demo.gateway}/productpage: {REQUESTS} x 200" in output
        # While it runs, the gateway answers as Istio's tasks expect (`curl http://$GATEWAY_URL/productpage`).
        with urllib.request.urlopen(f"http://127.0.0.1:{demo.gateway}/productpage", timeout=10) as response:
            assert response.status == 200 and b"Book" in response.read()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{demo.gateway}/nothing", timeout=10)
        assert missing.value.code == 404
        assert f"traces: {REQUESTS}/{REQUESTS} complete" in output, output
        assert f"tracing to provider 'jaeger' (jaeger, http://127.0.0.1:{demo.otlp}/v1/traces)" in output
        # Each sidecar exports to the OTLP port only: that is the one provider in force.
        admin = re.search(r"productpage-v1 .* admin (http://127\.0\.0\.1:\d+)/config_dump", output)
        assert admin is not None
        dump = get_json(f"{admin.group(1)}/config_dump")
        [provider] = dump["providers"]
        assert provider["name"] == "jaeger" and provider["jaeger"]["port"] == demo.otlp
        body = get_json(f"http://127.0.0.1:{demo.query}/api/traces?service=productpage.default&limit=20")
        assert_bookinfo_traces([trace_from_jaeger(trace) for trace in body["data"]])
        # Each sidecar's (and the gateway's) metrics URL, printed under its row, serves Istio's standard metrics.
        metrics = re.findall(r"^ +metrics (http://127\.0\.0\.1:\d+/stats/prometheus)$", output, re.MULTILINE)
        assert len(metrics) == 7, output  # productpage, details, reviews v1-v3, ratings, istio-ingressgateway
        productpage = re.search(r"productpage-v1 .*\n +metrics (\S+)", output)
        assert productpage is not None and productpage.group(1) in metrics
        with urllib.request.urlopen(productpage.group(1), timeout=10) as response:
            exposition = response.read().decode()
        assert re.search(r'istio_requests_total\{[^}]*reporter="destination"[^}]*'
                         r'destination_canonical_service="productpage"[^}]*\} [1-9]', exposition), exposition


def test_demo_once_fails_with_the_problems_when_traces_are_incomplete(tmp_path: Path) -> None:
    telemetry = tmp_path / "telemetry.yaml"
    telemetry.write_text((Path(__file__).resolve().parents[2] / "samples/bookinfo/telemetry.yaml").read_text() + """
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ratings-quiet, namespace: default}
spec:
  selector: {matchLabels: {app: ratings}}
  tracing:
  - disableSpanReporting: true
""")
    port, gateway, zipkin, otlp, query, otlp_grpc = pick_free(6)
    result = subprocess.run(
        [sys.executable, "-m", "tracemesh_cli.main", "demo", "--once", "--requests", "3", "--trace-timeout", "2",
         "--telemetry", str(telemetry), "--port", str(port), "--gateway-port", str(gateway),
         "--zipkin-port", str(zipkin), "--otlp-port", str(otlp),
         "--query-port", str(query), "--otlp-grpc-port", str(otlp_grpc)],
        capture_output=True, text=True, timeout=90, env=demo_env(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "expected one SERVER span of ratings.default named 'ratings.default.svc.cluster.local:9080/*', found 0" \
        in result.stdout
    assert f"logs and proxy configs kept in {tmp_path}/tracemesh-demo-" in result.stderr
