"""HTTP/2 and gRPC through a sidecar pair: h2c prior knowledge and Upgrade, Istio's protocol selection, gRPC spans.

The apps are tests/netns/netns_grpc_apps.py's, run as processes on loopback: `h2c` answers HTTP/1.1, HTTP/2 with
prior knowledge and `Upgrade: h2c`, and says in its JSON body which one it was spoken to in; `greeter` is
grpc's helloworld Greeter (grpcio), refusing a name `status:<CODE>` with that code. Clients are real: curl
(its HTTP/2 from nghttp2) and grpcio's channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from proxy_harness import Sidecar, client_config, server_config, sidecar

from tracemesh_sidecar.config.model import InboundPort, OutboundConfig, ServiceEntry
from tracemesh_sidecar.spans.model import Span

APPS = Path(__file__).parents[1] / "netns" / "netns_grpc_apps.py"
HELLO = "/helloworld.Greeter/SayHello"
STREAM = "/helloworld.Greeter/SayHelloStreamReply"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_app(kind: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, str(APPS), kind, str(port)])
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{kind} app exited with {process.returncode}") from None
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{kind} app did not listen on {port}")


@contextlib.contextmanager
def _app(kind: str) -> Iterator[int]:
    process, port = _start_app(kind)
    try:
        yield port
    finally:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def h2c_app() -> Iterator[int]:
    with _app("h2c") as port:
        yield port


@pytest.fixture(scope="module")
def greeter() -> Iterator[int]:
    with _app("greeter") as port:
        yield port


def _pair_configs(app_port: int, inbound_endpoint: int, service_protocol: str = "",
                  port_protocol: str = "") -> tuple[Any, Any]:
    server = server_config(app_port)
    server = replace(server, inbound=replace(server.inbound, ports=(
        InboundPort(port=9080, app_port=app_port, listen="127.0.0.1:0", protocol=port_protocol),)))
    client = client_config([f"127.0.0.1:{inbound_endpoint}"], outbound=OutboundConfig(services=(
        ServiceEntry(host="reviews.default.svc.cluster.local", port=9080,
                     endpoints=(f"127.0.0.1:{inbound_endpoint}",), protocol=service_protocol),)))
    return server, client


class Pair:
    def __init__(self, client: Sidecar, server: Sidecar) -> None:
        self.client = client
        self.server = server

    async def spans(self, count_each: int = 1) -> tuple[list[Span], list[Span]]:
        """(the client sidecar's spans, the server sidecar's), once each has reported `count_each`."""
        return await self.client.exporters.wait_spans(count_each), await self.server.exporters.wait_spans(count_each)


async def _pair(app_port: int, service_protocol: str = "", port_protocol: str = "") -> AsyncIterator[Pair]:
    """The client sidecar in front of the server sidecar in front of the app (a generator: `async for`)."""
    server, _ = _pair_configs(app_port, 0, service_protocol, port_protocol)
    async with sidecar(server) as server_side:
        _, client = _pair_configs(app_port, server_side.inbound_port, service_protocol, port_protocol)
        async with sidecar(client) as client_side:
            yield Pair(client_side, server_side)


async def _curl(port: int, *flags: str, path: str = "/x") -> tuple[str, str, dict[str, Any]]:
    """(status, HTTP version curl spoke, the app's JSON answer) of a GET through the client sidecar."""
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", *flags, "-H", "Host: reviews:9080", f"http://127.0.0.1:{port}{path}",
        "-w", "\n%{http_code} %{http_version}", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 20)
    body, _, trailer = out.decode().rpartition("\n")
    status, version = trailer.split()
    assert process.returncode == 0, err.decode()
    return status, version, json.loads(body) if body.startswith("{") else {}


def _one_trace(client_spans: list[Span], server_spans: list[Span]) -> tuple[Span, Span]:
    [client], [server] = client_spans, server_spans
    assert client.kind == "CLIENT" and server.kind == "SERVER"
    assert server.trace_id == client.trace_id and server.parent_id == client.id
    return client, server


@pytest.mark.parametrize(("flag", "curl_version"), [("--http2-prior-knowledge", "2"), ("--http2", "2")])
async def test_curl_over_h2c_through_the_pair_reaches_the_app_over_http2(h2c_app: int, flag: str,
                                                                          curl_version: str) -> None:
    async for pair in _pair(h2c_app):
        status, version, answer = await _curl(pair.client.outbound_port, flag)
        client, server = _one_trace(*await pair.spans())
    assert (status, version) == ("200", curl_version)
    # A sniffed port: the upstream speaks the downstream's version (Istio's use_downstream_protocol).
    assert answer["protocol"] == "HTTP/2"
    assert answer["headers"]["x-b3-traceid"] == client.trace_id
    assert answer["headers"]["x-b3-spanid"] == server.id
    for span in (client, server):
        assert span.tags["http.protocol"] == "HTTP/2"
        assert span.tags["http.status_code"] == "200"
        assert span.tags["http.url"] == "http://reviews:9080/x"
        assert "grpc.status_code" not in span.tags and "error" not in span.tags


@pytest.mark.parametrize(("flag", "service_protocol", "port_protocol", "between", "app"), [
    # cluster_builder.go setUpstreamProtocol: explicit HTTP is HTTP/1.1 upstream whatever the client spoke ...
    ("--http2-prior-knowledge", "HTTP", "HTTP", "HTTP/1.1", "HTTP/1.1"),
    ("--http2-prior-knowledge", "", "HTTP", "HTTP/2", "HTTP/1.1"),
    # ... HTTP2 and GRPC are HTTP/2 upstream, also for an HTTP/1.1 client.
    ("--http1.1", "HTTP2", "HTTP2", "HTTP/2", "HTTP/2"),
    ("--http1.1", "GRPC", "", "HTTP/2", "HTTP/2"),  # a sniffed port: the downstream's version
    ("--http1.1", "", "", "HTTP/1.1", "HTTP/1.1"),
])
async def test_each_leg_speaks_its_port_protocol_as_istio_selects_it(
        h2c_app: int, flag: str, service_protocol: str, port_protocol: str, between: str, app: str) -> None:
    async for pair in _pair(h2c_app, service_protocol, port_protocol):
        status, _, answer = await _curl(pair.client.outbound_port, flag)
        client, server = _one_trace(*await pair.spans())
    assert status == "200"
    assert client.tags["http.protocol"] == ("HTTP/2" if flag != "--http1.1" else "HTTP/1.1")
    assert server.tags["http.protocol"] == between
    assert answer["protocol"] == app
    assert answer["headers"]["x-b3-spanid"] == server.id


def _grpc_calls(port: int) -> list[tuple[str, grpc.StatusCode, list[bytes]]]:
    """Through the client sidecar: the unary call, the server-streaming call, two refused calls."""
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.default_authority", "reviews:9080")]) as channel:
        say = channel.unary_unary(HELLO)
        stream = channel.unary_stream(STREAM)
        results: list[tuple[str, grpc.StatusCode, list[bytes]]] = [
            ("unary", grpc.StatusCode.OK, [say(b"\x0a\x03bob", timeout=10)]),
            ("stream", grpc.StatusCode.OK, list(stream(b"\x0a\x03bob", timeout=10))),
        ]
        for code in ("NOT_FOUND", "INTERNAL"):
            name = f"status:{code}".encode()
            try:
                say(b"\x0a" + bytes([len(name)]) + name, timeout=10)
            except grpc.RpcError as error:
                results.append((code, error.code(), []))
    return results


async def test_grpc_calls_are_one_span_pair_each_tagged_as_envoy_tags_them(greeter: int) -> None:
    async for pair in _pair(greeter, "GRPC", "GRPC"):
        results = await asyncio.to_thread(_grpc_calls, pair.client.outbound_port)
        client_spans, server_spans = await pair.spans(4)
        await asyncio.sleep(0.2)  # a stray fifth span would be in by now
        assert len(pair.client.exporters.spans) == len(pair.server.exporters.spans) == 4
    assert [(name, code) for name, code, _ in results] == [
        ("unary", grpc.StatusCode.OK), ("stream", grpc.StatusCode.OK),
        ("NOT_FOUND", grpc.StatusCode.NOT_FOUND), ("INTERNAL", grpc.StatusCode.INTERNAL)]
    assert len(results[1][2]) == 5  # every reply of the stream arrived
    expected = [(HELLO, "0", False), (STREAM, "0", False), (HELLO, "5", False), (HELLO, "13", True)]
    for client, server, (path, grpc_status, error) in zip(client_spans, server_spans, expected, strict=True):
        _one_trace([client], [server])
        for span in (client, server):
            tags = span.tags
            assert tags["http.protocol"] == "HTTP/2" and tags["http.method"] == "POST"
            assert tags["http.status_code"] == "200"  # gRPC's status is in grpc-status, not :status
            assert tags["grpc.path"] == path and tags["grpc.content_type"] == "application/grpc"
            assert tags["grpc.status_code"] == grpc_status
            # http_tracer_impl.cc addGrpcResponseTags: NOT_FOUND is the client's error, INTERNAL the server's.
            assert ("error" in tags) is error
            assert tags["response_flags"] == "-"


async def test_a_grpc_call_to_a_dead_upstream_gets_envoys_trailers_only_unavailable() -> None:
    dead = _free_port()
    _, client = _pair_configs(dead, dead, "GRPC", "GRPC")
    async with sidecar(client) as client_side:
        def call() -> grpc.RpcError:
            with grpc.insecure_channel(f"127.0.0.1:{client_side.outbound_port}",
                                       options=[("grpc.default_authority", "reviews:9080")]) as channel:
                with pytest.raises(grpc.RpcError) as raised:
                    channel.unary_unary(HELLO)(b"\x0a\x01x", timeout=10)
                return raised.value
        error = await asyncio.to_thread(call)
        [span] = await client_side.exporters.wait_spans(1)
    assert error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert "upstream connect error" in error.details()  # type: ignore[attr-defined]
    assert span.tags["http.status_code"] == "200"  # Envoy reports the local reply's :status (proxy/grpc.py)
    assert span.tags["grpc.status_code"] == "14"
    assert span.tags["response_flags"] == "UF"
    assert span.tags["error"] == "true"
