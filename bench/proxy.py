"""`python -m bench proxy`: the sidecar's cost per request, measured against a real peer in one run.

Three paths to the same nginx origin (1 KB request and response bodies):
  direct         load generator -> origin
  tracemesh pair load generator -> client sidecar (outbound) -> server sidecar (inbound) -> origin,
                 tracing on at 100% sampling, spans exported in Zipkin JSON to a sink
  gateway hop    load generator -> ingress gateway (`tracemesh proxy router`, one route) -> server sidecar
                 -> origin: the gateway's cost (two spans per request: its SERVER and upstream CLIENT span)
                 beside the client sidecar's in the same run
  nginx pair     load generator -> nginx reverse proxy -> nginx reverse proxy -> origin
  relay pair     load generator -> bare uvloop TCP relay -> bare uvloop TCP relay -> origin (bench/relay.py):
                 the floor under any proxy on the sidecar's event loop, no HTTP work at all
For each: saturated throughput and latency (wrk), then latency at a fixed 1000 requests/s
(open loop), each proxy's CPU milliseconds per 1000 requests and peak RSS.

Then the exporters: the same tracemesh pair exporting OTLP/HTTP, then OTLP/gRPC, to the same sink
(the embedded collector: `tracemesh collector`), so the sidecars' cost of each transport shows side by side.

Then Istio's standard metrics and access logs: the same pair with both off (no istio_* metric, no access
log), and with both on (metrics, and an access log in Istio's default format per sidecar, written to a file),
so the sidecars' cost of telemetry shows side by side. The plain "tracemesh pair" is Istio's default: metrics
on, no access log.

Every path runs once in each of ROUNDS rounds, the order turned each round (bench/rounds.py); the figures are
the rounds' medians, and each ratio to nginx's pair is taken within a round, then given as the median and the
range over the rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import nginx_peers
from bench.interpreter import Interpreter, second_interpreter
from bench.loadgen import run_fixed_rate
from bench.processes import Measured, free_port, save_results, started
from bench.rounds import per_round, rotated, rounds_summary
from tracemesh_sidecar import BUILD
from tracemesh_sidecar.build import PURE_PYTHON_ENV
from tracemesh_sidecar.config import (
    InboundConfig,
    InboundPort,
    Listeners,
    NodeIdentity,
    OutboundConfig,
    ProviderConfig,
    ProxyConfig,
    ServiceEntry,
    TracingConfig,
    TracingPolicy,
    dump_proxy_config,
)
from tracemesh_sidecar.config.model import Transport
from tracemesh_sidecar.config.observability import AccessLogConfig, AccessLogSink, MetricsConfig, MetricsPolicy
from tracemesh_sidecar.config.routes import (
    GatewayConfig,
    GatewayListener,
    Route,
    RouteTable,
    VirtualHost,
    WeightedDestination,
)

# Three rounds of 5 s each way rather than one of 8 s per path (bench/rounds.py): the proxy bench takes ~12 minutes
# instead of ~6, and a ratio no longer rests on which minute each path ran in.
ROUNDS = 3
SATURATED_SECONDS = 5
FIXED_RATE = 1000
FIXED_SECONDS = 5
WRK_CONNECTIONS = 16
BACKEND = "backend.default.svc.cluster.local"
OTLP_HTTP_PATH, OTLP_GRPC_PATH = "pair, OTLP/HTTP", "pair, OTLP/gRPC"
DIRECT_PATH, PAIR_PATH, NGINX_PATH = "direct", "tracemesh pair", "nginx pair"
GATEWAY_PATH = "gateway hop"
TELEMETRY_OFF_PATH, TELEMETRY_ON_PATH = "pair, telem off", "pair, telem on"
PURE_PATH = "pair, pure Py"  # the pair again with TRACEMESH_PURE_PYTHON=1: the compiled build's gain, same run
SECOND_INTERPRETER_PATH = "pair, 2nd Py"  # the pair again on BENCH_SECOND_PYTHON (bench/interpreter.py)
RELAY_PATH = "relay pair"
RELAY = [sys.executable, str(Path(__file__).with_name("relay.py"))]
TRACEMESH = [sys.executable, "-m", "tracemesh_cli.main"]


@dataclass
class ProxyCost:
    name: str
    cpu_ms_per_1000_saturated: float
    cpu_ms_per_1000_at_fixed_rate: float
    peak_rss_mb: float


@dataclass
class PathResult:
    path: str
    saturated_rps: float
    saturated_p50_ms: float
    saturated_p90_ms: float
    saturated_p99_ms: float
    fixed_p50_ms: float
    fixed_p90_ms: float
    fixed_p99_ms: float
    fixed_errors: int
    proxies: list[ProxyCost] = field(default_factory=list)
    notes: str = ""


def _wrk_script(tmp: Path, target: str, host: str) -> Path:
    script = tmp / f"wrk-{abs(hash(target))}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = string.rep("y", 1024)\n'
        'wrk.headers["Content-Type"] = "text/plain"\n'
        f'wrk.headers["Host"] = "{host}"\n'
        f'wrk.path = "{target}"\n'
    )
    return script


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(port: int, script: Path, seconds: int) -> dict[str, float]:
    output = subprocess.run(
        ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True,
    ).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}  # type: ignore[union-attr]
    result["requests"] = float(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    for percent in ("50", "90", "99"):
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        result[f"p{percent}"] = float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non2xx"] = float(errors.group(1)) if errors else 0.0
    return result


def request_bytes(target: str, host: str) -> bytes:
    return (f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: 1024\r\n\r\n").encode() + b"y" * 1024


def _measure(path: str, port: int, target: str, host: str, proxies: list[Measured], tmp: Path) -> PathResult:
    script = _wrk_script(tmp, target, host)
    _wrk(port, script, 2)  # warm-up: connection pools, allocator, CPU frequency
    before = [proxy.cpu_seconds() for proxy in proxies]
    saturated = _wrk(port, script, SATURATED_SECONDS)
    after = [proxy.cpu_seconds() for proxy in proxies]
    saturated_cost = [(a - b) * 1000 / saturated["requests"] * 1000 for a, b in zip(after, before, strict=True)]

    before = [proxy.cpu_seconds() for proxy in proxies]
    fixed = asyncio.run(run_fixed_rate("127.0.0.1", port, request_bytes(target, host), FIXED_RATE, FIXED_SECONDS))
    after = [proxy.cpu_seconds() for proxy in proxies]
    fixed_cost = [(a - b) * 1000 / max(fixed.completed, 1) * 1000 for a, b in zip(after, before, strict=True)]
    return PathResult(
        path=path,
        saturated_rps=saturated["rps"], saturated_p50_ms=saturated["p50"], saturated_p90_ms=saturated["p90"],
        saturated_p99_ms=saturated["p99"],
        fixed_p50_ms=fixed.percentile(0.5), fixed_p90_ms=fixed.percentile(0.9), fixed_p99_ms=fixed.percentile(0.99),
        fixed_errors=fixed.errors + int(saturated["non2xx"]),
        proxies=[ProxyCost(p.name, round(s, 1), round(f, 1), round(p.peak_rss_mb(), 1))
                 for p, s, f in zip(proxies, saturated_cost, fixed_cost, strict=True)],
    )


def _telemetry(tmp: Path, name: str, on: bool | None) -> tuple[MetricsConfig, AccessLogConfig]:
    """None keeps Istio's default (metrics on, no access log); False turns both off; True turns both on, each
    sidecar logging every request in Istio's default TEXT format to its own file."""
    if on is None:
        return MetricsConfig(), AccessLogConfig()
    if not on:
        off = MetricsPolicy(enabled=False)
        return MetricsConfig(client=off, server=off), AccessLogConfig()
    logs = (AccessLogSink(path=str(tmp / f"access-{name}.log")),)
    return MetricsConfig(), AccessLogConfig(client=logs, server=logs)


def sidecar_configs(tmp: Path, origin_port: int, provider: ProviderConfig,
                    telemetry: bool | None = None) -> tuple[Path, Path, int, int, int]:
    client_port, server_port = free_port(), free_port()
    client_admin, server_admin = free_port(), free_port()
    client_metrics, client_logs = _telemetry(tmp, "client", telemetry)
    server_metrics, server_logs = _telemetry(tmp, "server", telemetry)
    tracing = TracingPolicy(provider=provider.name, sampling_percentage=100.0)
    client = ProxyConfig(
        node=NodeIdentity(pod_name="bench-client", namespace="default", pod_ip="127.0.0.1",
                          canonical_service="bench-client"),
        listeners=Listeners(outbound=f"127.0.0.1:{client_port}", inbound=None, admin=f"127.0.0.1:{client_admin}",
                            health=None, prometheus=None),
        outbound=OutboundConfig(services=(ServiceEntry(BACKEND, 9080, (f"127.0.0.1:{server_port}",)),)),
        tracing=TracingConfig(client=tracing, server=tracing), providers=(provider,),
        metrics=client_metrics, access_logs=client_logs,
    )
    server = ProxyConfig(
        node=NodeIdentity(pod_name="backend-v1", namespace="default", pod_ip="127.0.0.1",
                          canonical_service="backend"),
        listeners=Listeners(outbound=None, inbound=None, admin=f"127.0.0.1:{server_admin}", health=None,
                            prometheus=None),
        inbound=InboundConfig(ports=(InboundPort(port=9080, app_port=origin_port, listen=f"127.0.0.1:{server_port}"),)),
        tracing=TracingConfig(client=tracing, server=tracing), providers=(provider,),
        metrics=server_metrics, access_logs=server_logs,
    )
    paths = []
    for name, config in (("client", client), ("server", server)):
        path = tmp / f"sidecar-{name}.json"
        path.write_text(json.dumps(dump_proxy_config(config)))
        paths.append(path)
    return paths[0], paths[1], client_port, server_port, client_admin


def _gateway_config(tmp: Path, server_port: int, provider: ProviderConfig) -> tuple[Path, int]:
    """istio-ingressgateway in router mode: every path of every host to the backend's server sidecar."""
    port, admin = free_port(), free_port()
    tracing = TracingPolicy(provider=provider.name, sampling_percentage=100.0)
    route = Route(name="", match=(), decorator=f"{BACKEND}:9080/*", destinations=(WeightedDestination(BACKEND, 9080),))
    config = ProxyConfig(
        node=NodeIdentity(pod_name="istio-ingressgateway-bench", namespace="istio-system", pod_ip="127.0.0.1",
                          canonical_service="istio-ingressgateway"),
        proxy_type="router",
        gateway=GatewayConfig((GatewayListener(f"127.0.0.1:{port}", 80, "http.80"),)),
        route_tables=(RouteTable("http.80", (VirtualHost("default/backend", ("*",), (route,)),)),),
        listeners=Listeners(outbound=None, inbound=None, admin=f"127.0.0.1:{admin}", health=None, prometheus=None),
        outbound=OutboundConfig(services=(ServiceEntry(BACKEND, 9080, (f"127.0.0.1:{server_port}",)),)),
        tracing=TracingConfig(client=tracing, server=tracing), providers=(provider,),
    )
    path = tmp / "gateway.json"
    path.write_text(json.dumps(dump_proxy_config(config)))
    return path, port


def spans_sent(admin_port: int) -> str:
    import urllib.request

    with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats", timeout=2) as r:
        lines = r.read().decode().splitlines()
        return ", ".join(line for line in lines if "spans_sent" in line or "spans_dropped:" in line)
    return "admin /stats unavailable"


@contextlib.contextmanager
def _origin(tmp: Path) -> Iterator[int]:
    port = free_port()
    with started("origin", nginx_peers.argv(nginx_peers.origin_conf(tmp, port)), port):
        yield port


def _measure_pair(path: str, tmp: Path, origin_port: int, provider: ProviderConfig,
                  telemetry: bool | None = None, pure_python: bool = False,
                  tracemesh: list[str] = TRACEMESH) -> PathResult:
    client_conf, server_conf, client_port, server_port, client_admin = sidecar_configs(tmp, origin_port, provider,
                                                                                       telemetry)
    proxy = [*tracemesh, "proxy", "--config"]
    env = {**os.environ, PURE_PYTHON_ENV: "1"} if pure_python else None
    with started("tracemesh server sidecar", [*proxy, str(server_conf)], server_port, env) as server, \
            started("tracemesh client sidecar", [*proxy, str(client_conf)], client_port, env) as client:
        result = _measure(path, client_port, f"http://{BACKEND}:9080/", f"{BACKEND}:9080", [client, server], tmp)
        time.sleep(1.5)  # let the last batch of spans go out before reading the counters
        result.notes = "client sidecar: " + spans_sent(client_admin)
    return result


def _measure_gateway(tmp: Path, origin_port: int, provider: ProviderConfig) -> PathResult:
    _, server_conf, _, server_port, _ = sidecar_configs(tmp, origin_port, provider)
    gateway_conf, gateway_port = _gateway_config(tmp, server_port, provider)
    proxy = [*TRACEMESH, "proxy"]
    with started("tracemesh server sidecar", [*proxy, "--config", str(server_conf)], server_port) as server, \
            started("tracemesh ingress gateway", [*proxy, "router", "--config", str(gateway_conf)],
                    gateway_port) as gateway:
        return _measure(GATEWAY_PATH, gateway_port, "/", "bookinfo.example.com", [gateway, server], tmp)


@contextlib.contextmanager
def _collector() -> Iterator[tuple[int, int]]:
    """The embedded collector as the OTLP sink: (OTLP/HTTP port, OTLP/gRPC port)."""
    otlp_http, otlp_grpc, zipkin, query = (free_port() for _ in range(4))
    argv = [*TRACEMESH, "collector", "--max-spans", "20000",
            "--otlp-port", str(otlp_http), "--otlp-grpc-port", str(otlp_grpc), "--zipkin-port", str(zipkin),
            "--query-port", str(query)]
    with started("collector", argv, otlp_grpc):
        yield otlp_http, otlp_grpc


@dataclass(frozen=True)
class _Segment:
    """One path of the run: what it is called, and how one round measures it."""

    path: str
    measure: Callable[[], PathResult]


def _segments(tmp: Path, origin_port: int, second: Interpreter | None, otlp_http: int,
              otlp_grpc: int) -> list[_Segment]:
    zipkin = ProviderConfig(name="zipkin", kind="zipkin", service="127.0.0.1", port=origin_port, path="/api/v2/spans")
    pair = functools.partial(_measure_pair, tmp=tmp, origin_port=origin_port, provider=zipkin)
    segments = [
        _Segment(DIRECT_PATH, functools.partial(_measure, DIRECT_PATH, origin_port, "/", f"127.0.0.1:{origin_port}",
                                                [], tmp)),
        _Segment(PAIR_PATH, functools.partial(pair, PAIR_PATH)),
    ]
    if BUILD.compiled:
        segments.append(_Segment(PURE_PATH, functools.partial(pair, PURE_PATH, pure_python=True)))
    if second is not None:
        segments.append(_Segment(SECOND_INTERPRETER_PATH, functools.partial(pair, SECOND_INTERPRETER_PATH,
                                                                            tracemesh=second.tracemesh)))
    segments += [
        _Segment(GATEWAY_PATH, functools.partial(_measure_gateway, tmp, origin_port, zipkin)),
        _Segment(TELEMETRY_OFF_PATH, functools.partial(pair, TELEMETRY_OFF_PATH, telemetry=False)),
        _Segment(TELEMETRY_ON_PATH, functools.partial(pair, TELEMETRY_ON_PATH, telemetry=True)),
        _Segment(NGINX_PATH, functools.partial(_measure_nginx_pair, tmp, origin_port)),
        _Segment(RELAY_PATH, functools.partial(_measure_relay_pair, tmp, origin_port)),
    ]
    variants: tuple[tuple[str, Transport, int], ...] = (
        (OTLP_HTTP_PATH, "http", otlp_http), (OTLP_GRPC_PATH, "grpc", otlp_grpc))
    for path, transport, port in variants:
        otel = ProviderConfig(name="otel", kind="opentelemetry", service="127.0.0.1", port=port,
                              path="/v1/traces" if transport == "http" else "", transport=transport)
        segments.append(_Segment(path, functools.partial(_measure_pair, path, tmp, origin_port, otel)))
    return segments


def _measure_nginx_pair(tmp: Path, origin_port: int) -> PathResult:
    inner, outer = free_port(), free_port()
    with started("nginx server proxy", nginx_peers.argv(nginx_peers.proxy_conf(tmp, "inner", inner, origin_port)),
                 inner) as server, \
            started("nginx client proxy", nginx_peers.argv(nginx_peers.proxy_conf(tmp, "outer", outer, inner)),
                    outer) as client:
        return _measure(NGINX_PATH, outer, "/", f"127.0.0.1:{outer}", [client, server], tmp)


def _measure_relay_pair(tmp: Path, origin_port: int) -> PathResult:
    inner, outer = free_port(), free_port()
    with started("relay server side", [*RELAY, str(inner), str(origin_port)], inner) as server, \
            started("relay client side", [*RELAY, str(outer), str(inner)], outer) as client:
        return _measure(RELAY_PATH, outer, "/", f"127.0.0.1:{outer}", [client, server], tmp)


def run(second: Interpreter | None, rounds: int = ROUNDS) -> dict[str, list[PathResult]]:
    """Every path's result in each round, in the order of the rounds (bench/rounds.py: why rounds)."""
    with tempfile.TemporaryDirectory(prefix="tracemesh-bench-") as name:
        tmp = Path(name)
        # The collector, the OTLP paths' sink, runs all along: idle while the other paths are measured.
        with _origin(tmp) as origin_port, _collector() as (otlp_http, otlp_grpc):
            segments = _segments(tmp, origin_port, second, otlp_http, otlp_grpc)
            results: dict[str, list[PathResult]] = {segment.path: [] for segment in segments}
            for round_index in range(rounds):
                for segment in rotated(segments, round_index, rounds):
                    results[segment.path].append(segment.measure())
    return results


def combined(results: Sequence[PathResult]) -> PathResult:
    """One path's rounds as one result: the median of each figure, every round's errors, the last round's notes."""
    def median(figure: Callable[[PathResult], float]) -> float:
        return statistics.median(figure(result) for result in results)

    def proxy_median(index: int, figure: Callable[[ProxyCost], float]) -> float:
        return round(statistics.median(figure(result.proxies[index]) for result in results), 1)

    last = results[-1]
    proxies = [ProxyCost(cost.name, proxy_median(index, lambda c: c.cpu_ms_per_1000_saturated),
                         proxy_median(index, lambda c: c.cpu_ms_per_1000_at_fixed_rate),
                         proxy_median(index, lambda c: c.peak_rss_mb))
               for index, cost in enumerate(last.proxies)]
    return PathResult(
        path=last.path, saturated_rps=median(lambda r: r.saturated_rps),
        saturated_p50_ms=median(lambda r: r.saturated_p50_ms), saturated_p90_ms=median(lambda r: r.saturated_p90_ms),
        saturated_p99_ms=median(lambda r: r.saturated_p99_ms), fixed_p50_ms=median(lambda r: r.fixed_p50_ms),
        fixed_p90_ms=median(lambda r: r.fixed_p90_ms), fixed_p99_ms=median(lambda r: r.fixed_p99_ms),
        fixed_errors=sum(result.fixed_errors for result in results), proxies=proxies, notes=last.notes)


def table(results: list[PathResult]) -> list[str]:
    """Each path's latency and throughput, then each proxy's CPU and memory: the figures, before any ratio."""
    lines = [
        f"{'path':<15} {'sat req/s':>10} {'p50':>7} {'p90':>7} {'p99':>7} | "
        f"{'@' + str(FIXED_RATE) + '/s p50':>11} {'p90':>7} {'p99':>7} {'errors':>6}",
    ]
    for r in results:
        lines.append(f"{r.path:<15} {r.saturated_rps:>10.0f} {r.saturated_p50_ms:>7.2f} {r.saturated_p90_ms:>7.2f} "
                     f"{r.saturated_p99_ms:>7.2f} | {r.fixed_p50_ms:>11.2f} {r.fixed_p90_ms:>7.2f} "
                     f"{r.fixed_p99_ms:>7.2f} {r.fixed_errors:>6}")
    lines.append("")
    fixed_header = f"(@{FIXED_RATE}/s)"
    lines.append(f"{'proxy':<26} {'CPU ms/1000 req (sat)':>22} {fixed_header:>10} {'peak RSS MB':>12}")
    for r in results:
        for p in r.proxies:
            lines.append(f"{p.name:<26} {p.cpu_ms_per_1000_saturated:>22.1f} {p.cpu_ms_per_1000_at_fixed_rate:>10.1f} "
                         f"{p.peak_rss_mb:>12.1f}")
    return lines


def report(rounds: Mapping[str, Sequence[PathResult]], second: Interpreter | None = None) -> str:
    """The figures (each path's median over the rounds), then the ratios the goals are about, each the median of
    the rounds' own ratios with their range."""
    by_path = {path: combined(results) for path, results in rounds.items() if results}
    count = max((len(results) for results in rounds.values()), default=0)
    lines = [rounds_summary(count), ""]
    lines += table(list(by_path.values()))
    mesh, nginx, direct = rounds.get(PAIR_PATH), rounds.get(NGINX_PATH), rounds.get(DIRECT_PATH)
    if mesh and nginx and direct:
        median = by_path[PAIR_PATH]
        lines += [
            "",
            f"tracemesh pair throughput / nginx pair: {throughput_ratio(mesh, nginx)} (goal >= 40%)",
            f"p90 added by the tracemesh pair at {FIXED_RATE}/s: {p90_added(mesh, direct)} ms (goal <= 1 ms); "
            f"by the nginx pair: {p90_added(nginx, direct)} ms",
            f"per sidecar at {FIXED_RATE}/s: CPU "
            + ", ".join(f"{p.cpu_ms_per_1000_at_fixed_rate:.0f}" for p in median.proxies)
            + " ms/1000 req, RSS " + ", ".join(f"{p.peak_rss_mb:.0f}" for p in median.proxies)
            + " MB (goal <= 60)",
        ]
        if median.notes:
            lines.append(median.notes)
        lines += _floor_report(mesh, nginx, rounds.get(RELAY_PATH))
        pure = rounds.get(PURE_PATH)
        if pure:
            lines += [
                f"the pair's build: {BUILD.describe()}; the same pair on pure Python: throughput / nginx pair "
                f"{throughput_ratio(pure, nginx)}, p90 added at {FIXED_RATE}/s {p90_added(pure, direct)} ms",
                *_side_by_side("sidecar build, compiled (mypyc) vs pure Python",
                               (("compiled", median), ("pure", by_path[PURE_PATH]))),
                "",
            ]
        on_second = rounds.get(SECOND_INTERPRETER_PATH)
        if on_second and second:
            lines += [
                f"the same pair on a second interpreter, {second.description}: throughput / nginx pair "
                f"{throughput_ratio(on_second, nginx)}, p90 added at {FIXED_RATE}/s {p90_added(on_second, direct)} ms",
                *_side_by_side("sidecar interpreter, this one vs the second",
                               (("this", median), ("second", by_path[SECOND_INTERPRETER_PATH]))),
                "",
            ]
    gateway, sidecars = by_path.get(GATEWAY_PATH), by_path.get(PAIR_PATH)
    if sidecars and gateway:
        hop, sidecar = gateway.proxies[0], sidecars.proxies[0]
        lines.append(f"gateway hop beside the client sidecar (same run, same origin, CPU ms per 1000 requests "
                     f"saturated / at {FIXED_RATE}/s): gateway {hop.cpu_ms_per_1000_saturated:.0f} / "
                     f"{hop.cpu_ms_per_1000_at_fixed_rate:.0f}, client sidecar {sidecar.cpu_ms_per_1000_saturated:.0f}"
                     f" / {sidecar.cpu_ms_per_1000_at_fixed_rate:.0f}; gateway peak RSS {hop.peak_rss_mb:.0f} MB")
    lines += _exporter_report(by_path.get(OTLP_HTTP_PATH), by_path.get(OTLP_GRPC_PATH))
    lines += _telemetry_report(by_path.get(TELEMETRY_OFF_PATH), by_path.get(TELEMETRY_ON_PATH))
    return "\n".join(lines)


def throughput_ratio(pair: Sequence[PathResult], nginx: Sequence[PathResult]) -> str:
    """A pair's saturated throughput over nginx's pair's, round by round: `38% (32% to 41%)`."""
    return per_round(pair, nginx, lambda p, n: p.saturated_rps / n.saturated_rps).format("{:.0%}")


def p90_added(pair: Sequence[PathResult], direct: Sequence[PathResult]) -> str:
    """What a pair adds to the direct path's p90 at the fixed rate, round by round, in ms."""
    return per_round(pair, direct, lambda p, d: p.fixed_p90_ms - d.fixed_p90_ms).format("{:.2f}")


def _floor_report(mesh: Sequence[PathResult], nginx: Sequence[PathResult],
                  relay: Sequence[PathResult] | None) -> list[str]:
    """Each sidecar's cost per request against nginx's and against a bare relay's on the same event loop: how much
    of it the runtime sets (reads, writes, wake-ups) and how much the sidecar's own per-request work adds."""
    if not relay:
        return []
    lines = [f"CPU per request per proxy, ratio to nginx and to a bare uvloop relay (bench/relay.py, no HTTP work), "
             f"saturated / at {FIXED_RATE}/s (goals: <= 3x / <= 2x nginx's):"]
    for index, side in ((0, "client"), (1, "server")):
        lines.append(f"  {side} sidecar: {_cost_ratios(mesh, nginx, index)} nginx's, "
                     f"{_cost_ratios(mesh, relay, index)} the relay's; the relay: {_cost_ratios(relay, nginx, index)} "
                     f"nginx's")
    return lines


_COST_FIGURES: tuple[Callable[[ProxyCost], float], ...] = (
    lambda cost: cost.cpu_ms_per_1000_saturated, lambda cost: cost.cpu_ms_per_1000_at_fixed_rate)


def _cost_ratios(own: Sequence[PathResult], reference: Sequence[PathResult], index: int) -> str:
    """`saturated / at the fixed rate`: the cost of the proxy at `index` over the reference's proxy there."""
    return " / ".join(cost_ratio(own, reference, index, figure) for figure in _COST_FIGURES)


def cost_ratio(own: Sequence[PathResult], reference: Sequence[PathResult], index: int,
               figure: Callable[[ProxyCost], float]) -> str:
    """One figure of the proxy at `index` over the reference's proxy there, round by round: `3.2x (2.8x to 3.9x)`;
    n/a where a baseline is 0."""
    if any(figure(result.proxies[index]) <= 0 for result in reference):
        return "n/a"
    return per_round(own, reference, lambda a, b: figure(a.proxies[index]) / figure(b.proxies[index])).format(
        "{:.1f}x")


def _telemetry_report(off: PathResult | None, on: PathResult | None) -> list[str]:
    """The sidecars' cost of Istio's standard metrics and access logs: both off against both on."""
    return _side_by_side("sidecar telemetry, metrics and access logs off vs on", (("off", off), ("on", on)))


def _exporter_report(http: PathResult | None, grpc: PathResult | None) -> list[str]:
    """The sidecars' cost with each OTLP exporter, side by side (same sink: the embedded collector)."""
    lines = _side_by_side("sidecar exporter, OTLP/HTTP vs OTLP/gRPC (same sink: the embedded collector)",
                          (("OTLP/HTTP", http), ("OTLP/gRPC", grpc)))
    if http is not None and grpc is not None:
        lines += [f"  OTLP/HTTP {http.notes}", f"  OTLP/gRPC {grpc.notes}"]
    return lines


def _side_by_side(title: str, variants: tuple[tuple[str, PathResult | None], ...]) -> list[str]:
    """Each sidecar's cost under each variant of the pair, side by side (same run, same load)."""
    results = [(name, result) for name, result in variants if result is not None]
    if len(results) != len(variants):
        return []
    lines = ["", f"{title} (same run, same load; CPU ms per 1000 requests saturated / at {FIXED_RATE}/s, "
                 f"peak RSS MB):"]
    for side, index in (("client sidecar", 0), ("server sidecar", 1)):
        cells = []
        for name, result in results:
            cost = result.proxies[index]
            cells.append(f"{name} {cost.cpu_ms_per_1000_saturated:.0f} / {cost.cpu_ms_per_1000_at_fixed_rate:.0f} ms, "
                         f"{cost.peak_rss_mb:.1f} MB")
        lines.append(f"  {side}: " + "   ".join(cells))
    return lines


def main(argv: list[str]) -> int:
    second = second_interpreter()
    rounds = run(second)
    print(report(rounds, second))
    save_results("proxy", {path: [asdict(result) for result in results] for path, results in rounds.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
