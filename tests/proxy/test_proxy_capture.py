"""Transparent capture: iptables REDIRECT in a network namespace, original destination via SO_ORIGINAL_DST.

Needs root, `ip`, `iptables` and `setpriv`; the proxy runs as UID 1337, whose own traffic is not captured.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

ECHO_HEADERS = textwrap.dedent("""
    import sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    class Echo(BaseHTTPRequestHandler):
        def do_GET(self):
            body = str(self.headers).lower().encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    HTTPServer((sys.argv[1], int(sys.argv[2])), Echo).serve_forever()
""")

CONFIG = """
version: "1"
node: {podName: productpage-v1-x, namespace: default, podIP: 10.77.0.1, canonicalService: productpage}
listeners: {outbound: "0.0.0.0:15001", inbound: "0.0.0.0:15006", admin: "127.0.0.1:15000",
            health: "127.0.0.1:15021", prometheus: "off"}
inbound: {ports: [{port: 9081, appPort: 9082}]}
tracing:
  client: {samplingPercentage: 100}
  server: {samplingPercentage: 100}
"""


def _missing_tools() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "iptables", "setpriv"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


@pytest.fixture
def namespace() -> Iterator[str]:
    reason = _missing_tools()
    if reason:
        pytest.skip(reason)
    name = f"tmproxy-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        run = ["ip", "netns", "exec", name]
        subprocess.run([*run, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run([*run, "ip", "addr", "add", "10.77.0.2/32", "dev", "lo"], check=True)
        for port, to in (("9080", "15001"), ("9081", "15006")):
            subprocess.run([*run, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "10.77.0.2",
                            "--dport", port, "-m", "owner", "!", "--uid-owner", "1337",
                            "-j", "REDIRECT", "--to-ports", to], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _in_namespace(name: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", name, *command]


def _get(name: str, url: str) -> str:
    script = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
    return subprocess.run(_in_namespace(name, sys.executable, "-c", script), check=True, capture_output=True,
                          text=True, timeout=10).stdout


def test_captured_traffic_is_proxied_to_its_original_destination(namespace: str) -> None:
    with tempfile.TemporaryDirectory() as directory:  # pytest's tmp_path is private to root; the proxy runs as 1337
        Path(directory).chmod(0o755)
        config = Path(directory) / "proxy.yaml"
        config.write_text(CONFIG)
        config.chmod(0o644)
        _run_capture(namespace, config)


def _run_capture(namespace: str, config: Path) -> None:
    processes = [
        subprocess.Popen(_in_namespace(namespace, sys.executable, "-c", ECHO_HEADERS, "10.77.0.2", "9080")),
        subprocess.Popen(_in_namespace(namespace, sys.executable, "-c", ECHO_HEADERS, "127.0.0.1", "9082")),
        subprocess.Popen(_in_namespace(namespace, "setpriv", "--reuid", "1337", "--regid", "1337", "--clear-groups",
                                       sys.executable, "-m", "tracemesh_cli.main", "proxy", "--config", str(config))),
    ]
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                _get(namespace, "http://127.0.0.1:15021/healthz/ready")
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        outbound = _get(namespace, "http://10.77.0.2:9080/")  # captured: OUTPUT -> 15001 -> 10.77.0.2:9080
        inbound = _get(namespace, "http://10.77.0.2:9081/")  # captured: -> 15006 -> app port 9082
        stats = _get(namespace, "http://127.0.0.1:15000/stats")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
    # No provider: no tracer, so, as Envoy without tracing, the proxy only ensures an x-request-id.
    assert "x-request-id" in outbound and "x-b3-traceid" not in outbound
    assert "x-request-id" in inbound and "x-b3-traceid" not in inbound
    assert "outbound.downstream_rq_total: 1" in stats
    assert "inbound.downstream_rq_total: 1" in stats
