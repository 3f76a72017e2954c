"""`python -m bench instructions`: instructions per proxied request in the client sidecar, counted, not timed.

CPU seconds on a shared machine move with its neighbours (the same build measured 212 and 258 ms per 1000
requests in two hours of one day); the instructions a process executes do not. valgrind's callgrind runs the
client sidecar of the `bench proxy` pair (Zipkin export, tracing at 100%, Istio's default metrics) with counting
off (`--instr-atstart=no`); h2load sends it 1024 requests to warm its caches and pools, then counting goes on
(`callgrind_control -i on`) for REQUESTS more (1 KB POST bodies, four keep-alive connections), and off again once
their spans are exported. The export batches are full (a flush interval longer than the run, REQUESTS a multiple
of the batch size), so each span carries its share of one batch's cost. Counted: everything the process executes
in user space, the event loop and the export included; not the kernel. The compiled and the pure-Python build in
the same run, then their ratio.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import nginx_peers
from bench.processes import free_port, save_results, started
from bench.proxy import BACKEND, TRACEMESH, sidecar_configs
from tracemesh_sidecar import BUILD
from tracemesh_sidecar.build import PURE_PYTHON_ENV
from tracemesh_sidecar.config import ProviderConfig
from tracemesh_sidecar.config.model import BatchConfig

REQUESTS = 2048
WARM_UP = 1024
_BATCH = BatchConfig(max_spans=512, flush_interval_s=600.0)  # full batches only: see the module's docstring
_TOOLS = ("valgrind", "callgrind_control", "h2load")


@dataclass
class Counted:
    build: str
    requests: int
    instructions: int

    @property
    def per_request(self) -> int:
        return self.instructions // self.requests


def callgrind_totals(profile: str) -> int:
    """The `totals:` line of a callgrind profile: the instructions counted (events: Ir)."""
    match = re.search(r"^totals:\s+(\d+)", profile, re.MULTILINE)
    if match is None:
        raise ValueError("a callgrind profile without a totals line")
    return int(match.group(1))


def _load(port: int, requests: int, body: Path) -> None:
    """`requests` requests through the client sidecar, every one answered 2xx: a count of error replies (a sidecar
    answering 503 for a route it lacks) would be the cost of another path."""
    done = subprocess.run(["h2load", "--h1", "-n", str(requests), "-c", "4", "-d", str(body),
                           f"--connect-to=127.0.0.1:{port}", "-H", "content-type: text/plain", f"http://{BACKEND}:9080/"],
                          capture_output=True, text=True, timeout=900, check=False)
    answered = succeeded_2xx(done.stdout)
    if done.returncode != 0 or answered != requests:
        raise RuntimeError(f"h2load got {answered} of {requests} answers 2xx through the client sidecar "
                           f"(exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def succeeded_2xx(h2load_output: str) -> int:
    """The 2xx answers h2load counted (its `status codes: N 2xx, ...` line); 0 without one."""
    match = re.search(r"^status codes: (\d+) 2xx", h2load_output, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=60)


def count(tmp: Path, origin_port: int, pure_python: bool) -> Counted:
    build = "pure Python" if pure_python else BUILD.describe()
    provider = ProviderConfig(name="zipkin", kind="zipkin", service="127.0.0.1", port=origin_port,
                              path="/api/v2/spans", batch=_BATCH)
    run = tmp / ("pure" if pure_python else "compiled")
    run.mkdir()
    client_conf, server_conf, client_port, server_port, _ = sidecar_configs(run, origin_port, provider)
    env = {**os.environ, PURE_PYTHON_ENV: "1"} if pure_python else None
    out = run / "callgrind.out"
    body = run / "body"
    body.write_bytes(b"y" * 1024)
    client = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
              *TRACEMESH, "proxy", "--config", str(client_conf)]
    with started("server sidecar", [*TRACEMESH, "proxy", "--config", str(server_conf)], server_port, env), \
            started("client sidecar under callgrind", client, client_port, env, start_timeout_s=600) as counted:
        pid = str(counted.process.pid)
        _load(client_port, WARM_UP, body)
        _control("-i", "on", pid)
        _load(client_port, REQUESTS, body)
        time.sleep(2)  # the last full batch leaves on the exporter's task
        _control("-i", "off", pid)
        _control("-d", pid)
        dumps = sorted(run.glob("callgrind.out.*"), key=lambda path: path.stat().st_mtime)
        if not dumps:
            raise RuntimeError(f"callgrind_control -d {pid} left no dump in {run} (valgrind's own messages are in "
                               "the client sidecar's stderr)")
        instructions = callgrind_totals(dumps[-1].read_text())
    return Counted(build, REQUESTS, instructions)


def main(argv: list[str]) -> int:
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        print(f"instructions: SKIPPED, not installed: {', '.join(missing)} (Debian: valgrind, nghttp2-client)")
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="tracemesh-instructions-") as name:
        tmp = Path(name)
        port = free_port()
        with started("origin", nginx_peers.argv(nginx_peers.origin_conf(tmp, port)), port):
            results.append(count(tmp, port, pure_python=False))
            if BUILD.compiled:
                results.append(count(tmp, port, pure_python=True))
    for result in results:
        print(f"client sidecar, {result.build}: {result.per_request:,} instructions per proxied request "
              f"({result.instructions:,} for {result.requests} requests)")
    if len(results) == 2:
        print(f"compiled / pure Python: {results[0].per_request / results[1].per_request:.2f}")
    save_results("instructions", [{**asdict(result), "per_request": result.per_request} for result in results])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
