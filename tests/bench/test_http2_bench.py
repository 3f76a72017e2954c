"""`python -m bench http2`: its h2c origin and its section of `make bench`, run for real (short runs; no timing
is asserted, only that every path was measured and every request answered)."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench import http2
from bench.nginx_peers import nginx_binary


def _missing_tool() -> str:
    if not shutil.which("h2load"):
        return "h2load (Debian's nghttp2-client)"
    try:
        nginx_binary()
    except RuntimeError:
        return "nginx (nginx-light)"
    return ""


pytestmark = pytest.mark.skipif(bool(_missing_tool()), reason=f"needs {_missing_tool()}")


def test_h2c_origin_answers_more_posts_per_connection_than_nginx_flood_check_allows_unread(tmp_path: Path) -> None:
    """nginx closes an HTTP/2 connection whose request bodies go unread after some 13,000 1 KB POSTs (its flood
    check): the origin reads them, so 15,000 on one connection all succeed."""
    body = tmp_path / "body"
    body.write_bytes(b"y" * 1024)
    with http2.h2c_origin(tmp_path) as (port, _):
        ran = subprocess.run(["h2load", "-c1", "-m16", "-n15000", "-N5", "-d", str(body), f"http://127.0.0.1:{port}/"],
                             capture_output=True, text=True, timeout=100)
    result = http2.parse_h2load(ran.stdout, "")
    assert (result.completed, result.errors) == (15000, 0), ran.stdout


def test_http2_section_measures_every_path_and_prints_figures_beside_nginx(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WARM_UP_SECONDS", "SATURATED_SECONDS", "FIXED_SECONDS"):
        monkeypatch.setattr(http2, name, 1)
    results = list(http2.run(rounds=2))
    # Every path once a round, the second round's order turned (bench/rounds.py).
    assert [r.path for r in results] == [http2.DIRECT, http2.NGINX, http2.MESH, http2.NGINX, http2.MESH, http2.DIRECT]
    for result in results:
        assert result.fixed_errors == 0, result
        assert result.saturated_rps > 0 and not math.isnan(result.fixed_p90_ms), result
        assert all(p.cpu_ms_per_1000_saturated > 0 and p.peak_rss_mb > 0 for p in result.proxies), result
    mesh = results[-2]
    assert [p.name for p in mesh.proxies] == ["tracemesh client sidecar", "tracemesh server sidecar"]
    sent = int(mesh.notes.split("spans_sent: ")[1].split(",")[0])
    assert sent > 0, mesh.notes  # tracing on: the client sidecar exported spans of the HTTP/2 requests
    report = http2.report(results)
    assert "HTTP/2 tracemesh pair throughput / nginx pair:" in report
    assert "2 round(s)" in report
    # Each ratio the median of the two rounds' (with their range, unless both rounds gave the same).
    assert re.search(r"tracemesh client sidecar / nginx client proxy: CPU \d+ / \d+ \(\d+\.\dx( \(\d+\.\dx to "
                     r"\d+\.\dx\))?\)", report), report
