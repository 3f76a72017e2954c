"""`tracemesh collector` as a user runs it: prints where each API listens, serves, exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys

import aiohttp
from collector_samples import bookinfo_trace, trace_id

from tracemesh_sidecar.spans import zipkin_json

COMMAND = [sys.executable, "-m", "tracemesh_cli.main", "collector"]


async def test_serves_until_sigterm_then_exits_0() -> None:
    process = await asyncio.create_subprocess_exec(
        *COMMAND, "--zipkin-port", "0", "--otlp-port", "0", "--query-port", "0", "--max-spans", "100",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    try:
        banner = [(await asyncio.wait_for(process.stdout.readline(), 20)).decode() for _ in range(4)]
        assert "keeping up to 100 spans" in banner[0]
        urls = {line.split()[0]: url for line in banner[1:] for url in re.findall(r"http://127\.0\.0\.1:\d+", line)}
        assert urls.keys() == {"Zipkin", "OTLP/HTTP", "Jaeger"}
        trace = bookinfo_trace(trace_id(1), 1_763_700_000_000_000)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.post(f"{urls['Zipkin']}/api/v2/spans", data=zipkin_json.encode_spans(trace),
                                 headers={"Content-Type": "application/json"}) as response:
                assert response.status == 202
            async with http.get(f"{urls['Jaeger']}/api/traces/{trace_id(1)}") as response:
                assert len((await response.json())["data"][0]["spans"]) == 7
            async with http.get(f"{urls['OTLP/HTTP']}/health") as response:
                assert (await response.json())["spans"] == 7
    finally:
        process.send_signal(signal.SIGTERM)
        rest, errors = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, errors.decode()
    assert b"stopped" in rest


async def test_a_busy_port_is_reported_with_the_option_to_change() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            *COMMAND, "--zipkin-port", "0", "--otlp-port", str(port), "--query-port", "0",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, errors = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port} for the OTLP/HTTP" in errors.decode()
    assert "--otlp-port" in errors.decode()
