"""`tracemesh collector` as a user runs it: prints where each API listens, serves, exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys

import aiohttp
import pytest
from collector_samples import bookinfo_trace, trace_id
from grpc import aio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from tracemesh_sidecar.spans import otlp, zipkin_json

COMMAND = [sys.executable, "-m", "tracemesh_cli.main", "collector"]


async def test_serves_until_sigterm_then_exits_0() -> None:
    process = await asyncio.create_subprocess_exec(
        *COMMAND, "--zipkin-port", "0", "--otlp-port", "0", "--query-port", "0", "--otlp-grpc-port", "0",
        "--max-spans", "100", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    try:
        banner = [(await asyncio.wait_for(process.stdout.readline(), 20)).decode() for _ in range(5)]
        assert "keeping up to 100 spans" in banner[0]
        urls = {line.split()[0]: url for line in banner[1:] for url in re.findall(r"http://127\.0\.0\.1:\d+", line)}
        assert urls.keys() == {"Zipkin", "OTLP/HTTP", "Jaeger"}
        [grpc_target] = [re.findall(r"127\.0\.0\.1:\d+", line)[0] for line in banner if line.split()[0] == "OTLP/gRPC"]
        async with aio.insecure_channel(grpc_target) as channel:
            request = ExportTraceServiceRequest.FromString(otlp.encode_request(bookinfo_trace(trace_id(2), 1)))
            await TraceServiceStub(channel).Export(request, timeout=10)
        trace = bookinfo_trace(trace_id(1), 1_763_700_000_000_000)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.post(f"{urls['Zipkin']}/api/v2/spans", data=zipkin_json.encode_spans(trace),
                                 headers={"Content-Type": "application/json"}) as response:
                assert response.status == 202
            async with http.get(f"{urls['Jaeger']}/api/traces/{trace_id(1)}") as response:
                assert len((await response.json())["data"][0]["spans"]) == 7
            async with http.get(f"{urls['OTLP/HTTP']}/health") as response:
                assert (await response.json())["spans"] == 14  # 7 over Zipkin, 7 over OTLP/gRPC
    finally:
        process.send_signal(signal.SIGTERM)
        rest, errors = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, errors.decode()
    assert b"stopped" in rest


@pytest.mark.parametrize(("option", "api"), [("--otlp-port", "the OTLP/HTTP"), ("--otlp-grpc-port", "OTLP/gRPC")])
async def test_a_busy_port_is_reported_with_the_option_to_change(option: str, api: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = {"--zipkin-port": "0", "--otlp-port": "0", "--query-port": "0", "--otlp-grpc-port": "0",
                 option: str(port)}
        process = await asyncio.create_subprocess_exec(
            *COMMAND, *(item for pair in ports.items() for item in pair),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, errors = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port} for {api}" in errors.decode()
    assert option in errors.decode()
