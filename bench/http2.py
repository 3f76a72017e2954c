"""`python -m bench http2`: the sidecar pair's cost per HTTP/2 request, against an nginx pair in the same run.

Three paths to one nginx origin speaking h2c (POST, 1 KB request and response bodies, as `bench proxy`):
  direct         h2load -> origin
  tracemesh pair h2load -> client sidecar (outbound) -> server sidecar (inbound) -> origin, h2c with prior
                 knowledge on every leg, tracing on at 100% sampling, spans in Zipkin JSON to a sink (the pair
                 `bench proxy` measures, same configs)
  nginx pair     h2load -> nginx -> nginx -> origin, h2c in, HTTP/2 upstream with `grpc_pass`
h2load (Debian's nghttp2-client) opens H2_CLIENTS connections of up to H2_STREAMS concurrent streams each:
saturated throughput, then a fixed FIXED_RATE requests/s in all; latency percentiles from its per-request log;
each proxy's CPU milliseconds per 1000 requests and peak RSS from /proc, as `bench proxy` measures them, and in
rounds as it does (bench/rounds.py): every path once a round, the order turned each round.

h2load's fixed rate (`--rps`, per connection) is not open-loop like bench.loadgen's: a request due while all
of its connection's streams are busy waits, and its latency counts from when it was sent. At FIXED_RATE over
H2_CLIENTS x H2_STREAMS streams that only matters once a request takes tens of milliseconds.
"""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import nginx_peers
from bench.loadgen import LoadResult
from bench.processes import Measured, free_port, save_results, started
from bench.proxy import (
    BACKEND,
    FIXED_RATE,
    FIXED_SECONDS,
    ROUNDS,
    SATURATED_SECONDS,
    PathResult,
    ProxyCost,
    combined,
    cost_ratio,
    p90_added,
    sidecar_configs,
    spans_sent,
    table,
    throughput_ratio,
)
from bench.rounds import rotated, rounds_summary
from tracemesh_sidecar.config import ProviderConfig

H2_CLIENTS = 4  # connections
H2_STREAMS = 16  # concurrent streams per connection: 64 requests in flight when saturated
WARM_UP_SECONDS = 2
STALL_SECONDS = 5  # a connection with no activity for this long is given up on (h2load -N)
DIRECT, MESH, NGINX = "direct", "tracemesh pair", "nginx pair"


@dataclass
class H2loadRun(LoadResult):
    """One h2load run: the requests asked for (`sent`), ended, failed or never ended (`errors`), each ended one's
    latency, and the throughput h2load reports."""

    rps: float = 0.0


def parse_h2load(stdout: str, log: str) -> H2loadRun:
    """h2load's summary (`finished in ..., N req/s`; `requests: ... N done, N succeeded, N failed, ...`) and its
    `--log-file` (tab-separated: start time in us since the epoch, status, us until the end of the response)."""
    finished = re.search(r"^finished in [^,]+, ([\d.]+) req/s", stdout, re.MULTILINE)
    requests = re.search(r"^requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", stdout, re.MULTILINE)
    if not finished or not requests:
        raise ValueError(f"h2load printed no summary: {stdout[-2000:]}")
    latencies = [int(row.split("\t")[2]) / 1000.0 for row in log.splitlines() if row.count("\t") >= 2]
    # `total` is what was asked for (with -D: what ended); a request given up on is failed but not done.
    total, done, succeeded = (int(count) for count in requests.groups())
    return H2loadRun(sent=total, completed=done, errors=total - succeeded, latencies_ms=latencies,
                     rps=float(finished.group(1)))


def _h2load_binary() -> str:
    found = shutil.which("h2load")
    if not found:
        raise RuntimeError("h2load is not installed: apt-get install nghttp2-client (the HTTP/2 benchmark's load)")
    return found


def h2load(port: int, authority: str, tmp: Path, seconds: int, rate: int | None = None) -> H2loadRun:
    """POST 1 KB to http://127.0.0.1:PORT/ with `:authority` AUTHORITY: saturated for SECONDS (requests in flight
    at the end are left out), or RATE * SECONDS requests at RATE/s, where a connection silent for STALL_SECONDS
    is given up on, its requests failed (h2load 1.52 can abort on `-N` in a timed run: not given there)."""
    body, log = tmp / "h2load-body", tmp / "h2load.log"
    body.write_bytes(b"y" * 1024)
    log.unlink(missing_ok=True)  # never read an earlier run's log as this one's
    timing = [f"-D{seconds}"] if rate is None else [
        f"-n{rate * seconds}", f"--rps={rate / H2_CLIENTS:g}", f"-N{STALL_SECONDS}"]
    argv = [_h2load_binary(), "-t1", f"-c{H2_CLIENTS}", f"-m{H2_STREAMS}", *timing, "-d", str(body),
            "-H", f":authority: {authority}", "--log-file", str(log), f"http://127.0.0.1:{port}/"]
    try:
        ran = subprocess.run(argv, capture_output=True, text=True, timeout=seconds * 3 + 30)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"h2load {' '.join(timing)} had not ended after {seconds * 3 + 30} s") from None
    try:
        return parse_h2load(ran.stdout, log.read_text() if log.exists() else "")
    except ValueError as error:
        raise RuntimeError(f"h2load exited {ran.returncode}: {error}; stderr: {ran.stderr[-1000:]}") from None


def _with_cpu_cost(proxies: list[Measured], load: Callable[[], H2loadRun]) -> tuple[H2loadRun, list[float]]:
    """Run the load and each proxy's CPU milliseconds per 1000 requests that ended during it."""
    before = [proxy.cpu_seconds() for proxy in proxies]
    ran = load()
    after = [proxy.cpu_seconds() for proxy in proxies]
    return ran, [(a - b) * 1000 / max(ran.completed, 1) * 1000 for a, b in zip(after, before, strict=True)]


def _measure(path: str, port: int, authority: str, proxies: list[Measured], tmp: Path) -> PathResult:
    h2load(port, authority, tmp, WARM_UP_SECONDS)  # connection pools, allocator, CPU frequency
    saturated, saturated_cost = _with_cpu_cost(proxies, lambda: h2load(port, authority, tmp, SATURATED_SECONDS))
    fixed, fixed_cost = _with_cpu_cost(proxies, lambda: h2load(port, authority, tmp, FIXED_SECONDS, FIXED_RATE))
    return PathResult(
        path=path, saturated_rps=saturated.rps, saturated_p50_ms=saturated.percentile(0.5),
        saturated_p90_ms=saturated.percentile(0.9), saturated_p99_ms=saturated.percentile(0.99),
        fixed_p50_ms=fixed.percentile(0.5), fixed_p90_ms=fixed.percentile(0.9), fixed_p99_ms=fixed.percentile(0.99),
        fixed_errors=saturated.errors + fixed.errors,
        proxies=[ProxyCost(p.name, round(s, 1), round(f, 1), round(p.peak_rss_mb(), 1))
                 for p, s, f in zip(proxies, saturated_cost, fixed_cost, strict=True)],
    )


@contextlib.contextmanager
def h2c_origin(tmp: Path) -> Iterator[tuple[int, int]]:
    """The h2c origin: (its port, the span sink's port)."""
    port, sink_port = free_port(), free_port()
    with started("origin", nginx_peers.argv(nginx_peers.h2c_origin_conf(tmp, port, sink_port)), port):
        yield port, sink_port


def _measure_mesh(tmp: Path, origin_port: int, sink_port: int) -> PathResult:
    zipkin = ProviderConfig(name="zipkin", kind="zipkin", service="127.0.0.1", port=sink_port, path="/api/v2/spans")
    client_conf, server_conf, client_port, server_port, client_admin = sidecar_configs(tmp, origin_port, zipkin)
    proxy = [sys.executable, "-m", "tracemesh_cli.main", "proxy", "--config"]
    with started("tracemesh server sidecar", [*proxy, str(server_conf)], server_port) as server, \
            started("tracemesh client sidecar", [*proxy, str(client_conf)], client_port) as client:
        result = _measure(MESH, client_port, f"{BACKEND}:9080", [client, server], tmp)
        time.sleep(1.5)  # let the last batch of spans go out before reading the counters
        result.notes = "client sidecar: " + spans_sent(client_admin)
    return result


def _measure_nginx(tmp: Path, origin_port: int) -> PathResult:
    inner, outer = free_port(), free_port()
    inner_conf = nginx_peers.grpc_proxy_conf(tmp, "h2-inner", inner, origin_port)
    outer_conf = nginx_peers.grpc_proxy_conf(tmp, "h2-outer", outer, inner)
    with started("nginx server proxy", nginx_peers.argv(inner_conf), inner) as server, \
            started("nginx client proxy", nginx_peers.argv(outer_conf), outer) as client:
        return _measure(NGINX, outer, f"127.0.0.1:{outer}", [client, server], tmp)


def run(rounds: int = ROUNDS) -> Iterator[PathResult]:
    """Each path's figures as it is measured: every path once a round, the order turned each round
    (bench/rounds.py); the baselines measured so far stand if a path fails."""
    with tempfile.TemporaryDirectory(prefix="tracemesh-bench-h2-") as name:
        tmp = Path(name)
        with h2c_origin(tmp) as (origin_port, sink_port):
            measures: dict[str, Callable[[], PathResult]] = {
                DIRECT: functools.partial(_measure, DIRECT, origin_port, f"127.0.0.1:{origin_port}", [], tmp),
                NGINX: functools.partial(_measure_nginx, tmp, origin_port),
                MESH: functools.partial(_measure_mesh, tmp, origin_port, sink_port),
            }
            for round_index in range(rounds):
                for path in rotated(list(measures), round_index, rounds):
                    yield measures[path]()


def by_path(results: Sequence[PathResult]) -> dict[str, list[PathResult]]:
    """The results of each path, in the order of the rounds."""
    grouped: dict[str, list[PathResult]] = {}
    for result in results:
        grouped.setdefault(result.path, []).append(result)
    return grouped


def _beside(mesh: Sequence[PathResult], nginx: Sequence[PathResult], medians: tuple[PathResult, PathResult],
            index: int, figure: Callable[[ProxyCost], float]) -> str:
    """`tracemesh / nginx (ratio)`: the rounds' medians, and the median and range of the rounds' ratios."""
    mesh_median, nginx_median = (figure(median.proxies[index]) for median in medians)
    return f"{mesh_median:.0f} / {nginx_median:.0f} ({cost_ratio(mesh, nginx, index, figure)})"


def report(results: list[PathResult]) -> str:
    rounds = by_path(results)
    medians = {path: combined(path_results) for path, path_results in rounds.items()}
    count = max((len(path_results) for path_results in rounds.values()), default=0)
    lines = [f"HTTP/2 (h2c), h2load -c{H2_CLIENTS} -m{H2_STREAMS}; latency in ms; {rounds_summary(count)}",
             *table(list(medians.values()))]
    mesh, nginx, direct = rounds.get(MESH), rounds.get(NGINX), rounds.get(DIRECT)
    if mesh and nginx and direct:
        pair = (medians[MESH], medians[NGINX])
        lines += [
            "",
            f"HTTP/2 tracemesh pair throughput / nginx pair: {throughput_ratio(mesh, nginx)}"
            if all(result.saturated_rps for result in nginx) else "HTTP/2 nginx pair: no throughput",
            f"HTTP/2 p90 added at {FIXED_RATE}/s: by the tracemesh pair {p90_added(mesh, direct)} ms, by the nginx "
            f"pair {p90_added(nginx, direct)} ms",
            f"HTTP/2 per proxy, tracemesh / nginx (CPU ms per 1000 requests saturated, at {FIXED_RATE}/s; peak RSS):",
        ]
        for index, (sidecar, peer) in enumerate(zip(pair[0].proxies, pair[1].proxies, strict=True)):
            lines.append(
                f"  {sidecar.name} / {peer.name}: CPU "
                f"{_beside(mesh, nginx, pair, index, lambda cost: cost.cpu_ms_per_1000_saturated)}, "
                f"{_beside(mesh, nginx, pair, index, lambda cost: cost.cpu_ms_per_1000_at_fixed_rate)}; "
                f"RSS {_beside(mesh, nginx, pair, index, lambda cost: cost.peak_rss_mb)} MB")
        if pair[0].notes:
            lines.append(pair[0].notes)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    results: list[PathResult] = []
    try:
        for result in run():
            results.append(result)
    except RuntimeError as error:  # a proxy that did not start, a load that did not end: report what was measured
        print(report(results))
        print(f"HTTP/2 benchmark stopped after {', '.join(r.path for r in results) or 'no path'}: {error}",
              file=sys.stderr)
        return 1
    print(report(results))
    save_results("http2", {path: [asdict(r) for r in path_results] for path, path_results in by_path(results).items()})
    failing = [r.path for r in results if r.fixed_errors or not r.saturated_rps > 0]
    if failing:
        print(f"HTTP/2 requests failed on: {', '.join(failing)} (h2load's failed requests: the errors column)",
              file=sys.stderr)
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
