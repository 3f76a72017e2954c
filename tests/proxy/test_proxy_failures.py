"""Upstream and downstream failures: Envoy's local replies, response flags on spans and stats, no crashes."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
from dataclasses import replace

import pytest
from proxy_harness import (
    Origin,
    RawOrigin,
    client_config,
    ok,
    pair,
    pipelined,
    read_request_head,
    read_response,
    request,
    server_config,
    sidecar,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_503_uf_with_an_error_span() -> None:
    async with sidecar(client_config([f"127.0.0.1:{_free_port()}"])) as client_side:
        response = await request(client_side.outbound_port,
                                 b"GET http://reviews:9080/x HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        span = (await client_side.exporters.wait_spans(1))[0]
        assert client_side.stats.get("outbound.response_flags.UF") == 1
        assert client_side.stats.get("upstream.cx_connect_fail") == 1
    assert response.status == 503
    assert b"reset reason: connection failure" in response.body
    assert span.tags["response_flags"] == "UF"
    assert span.tags["http.status_code"] == "503"
    assert span.tags["error"] == "true"


async def test_unresolvable_host_is_503_uh() -> None:
    async with sidecar(client_config([])) as client_side:
        response = await request(client_side.outbound_port,
                                 b"GET http://no-such-host.invalid/x HTTP/1.1\r\nHost: a\r\n\r\n")
        span = (await client_side.exporters.wait_spans(1))[0]
    assert response.status == 503
    assert span.tags["response_flags"] == "UH"


async def test_request_to_the_proxy_itself_is_refused_not_looped() -> None:
    async with sidecar(client_config([])) as client_side:
        port = client_side.outbound_port
        response = await request(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
    assert response.status == 503


async def test_upstream_reset_before_headers_is_503_uc() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.transport.abort()

    async with RawOrigin(reset) as app, sidecar(server_config(app.port)) as server_side:
        response = await request(server_side.inbound_port, b"GET /x HTTP/1.1\r\nHost: reviews\r\n\r\n")
        span = (await server_side.exporters.wait_spans(1))[0]
    assert response.status == 503
    assert b"connection termination" in response.body
    assert span.tags["response_flags"] == "UC"


async def test_upstream_reset_mid_response_closes_the_downstream_with_uc() -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"a" * 10)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()

    async with RawOrigin(half) as app, sidecar(server_config(app.port)) as server_side:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(b"GET /x HTTP/1.1\r\nHost: reviews\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        rest = await asyncio.wait_for(reader.read(), 5)  # ends: the proxy closed the connection
        writer.close()
        span = (await server_side.exporters.wait_spans(1))[0]
    assert head.startswith(b"HTTP/1.1 200")
    assert rest == b"a" * 10
    assert span.tags["response_flags"] == "UC"


async def test_request_timeout_is_504_ut(origin: Origin) -> None:
    config = server_config(origin.port)
    config = replace(config, inbound=replace(config.inbound, request_timeout_s=0.2))
    async with sidecar(config) as server_side:
        response = await request(server_side.inbound_port, b"GET /slow?delay=0.6 HTTP/1.1\r\nHost: r\r\n\r\n")
        span = (await server_side.exporters.wait_spans(1))[0]
        assert server_side.stats.get("inbound.response_flags.UT") == 1
    assert response.status == 504
    assert response.body == b"upstream request timeout"
    assert span.tags["response_flags"] == "UT"
    assert span.tags["http.status_code"] == "504"


async def test_connect_timeout_is_503_uf() -> None:
    # A listener that never accepts, with its accept queue full: the kernel drops further SYNs.
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(0)
        port = blackhole.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        await asyncio.sleep(0.05)
        config = server_config(port)
        config = replace(config, inbound=replace(config.inbound, connect_timeout_s=0.2))
        try:
            async with sidecar(config) as server_side:
                response = await request(server_side.inbound_port, b"GET / HTTP/1.1\r\nHost: r\r\n\r\n")
                span = (await server_side.exporters.wait_spans(1))[0]
        finally:
            for filler in fillers:
                filler.close()
    assert response.status == 503
    assert span.tags["response_flags"] == "UF"
    assert span.duration >= 150_000  # it waited for the connect timeout


async def test_downstream_gone_before_the_response_is_flagged_dc(origin: Origin) -> None:
    async with sidecar(server_config(origin.port)) as server_side:
        _reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(b"GET /slow?delay=0.3 HTTP/1.1\r\nHost: r\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()
        span = (await server_side.exporters.wait_spans(1))[0]
    assert span.tags["response_flags"] == "DC"


async def test_pooled_connection_closed_by_the_peer_is_retried_once_on_a_fresh_one() -> None:
    """The keep-alive race: the app closes an idle connection just as the proxy reuses it."""

    async def one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(ok(b"first"))
        await writer.drain()
        await read_request_head(reader)  # the second request on this connection: hang up without answering
        writer.transport.abort()

    async with RawOrigin(one_per_connection) as app, sidecar(server_config(app.port)) as server_side:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(b"GET /a HTTP/1.1\r\nHost: r\r\n\r\n")
        first = await asyncio.wait_for(read_response(reader), 5)
        writer.write(b"GET /b HTTP/1.1\r\nHost: r\r\n\r\n")
        second = await asyncio.wait_for(read_response(reader), 5)
        writer.close()
        assert server_side.stats.get("upstream.rq_retry") == 1
    assert (first.status, second.status) == (200, 200)
    assert app.connections == 2


async def test_malformed_requests_get_400_are_counted_and_the_proxy_keeps_serving(origin: Origin) -> None:
    garbage = [
        b"GET /x HTTP/1.1\r\nHost: r\r\nContent-Length: abc\r\n\r\n",
        b"GET /x HTTP/1.1\r\nBad Header Line\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]
    async with sidecar(server_config(origin.port)) as server_side:
        for raw in garbage:
            response = await request(server_side.inbound_port, raw)
            assert response.status == 400
        good = await request(server_side.inbound_port, b"GET /echo HTTP/1.1\r\nHost: r\r\n\r\n")
        assert server_side.stats.get("inbound.downstream_rq_malformed") == len(garbage)
    assert good.status == 200


async def test_malformed_trace_headers_are_counted_and_the_request_is_served(origin: Origin) -> None:
    async with pair(origin.port) as (client_side, _):
        response = await request(client_side.outbound_port, (
            b"GET http://reviews:9080/echo HTTP/1.1\r\nHost: reviews:9080\r\n"
            b"x-b3-traceid: not-hex-at-all\r\nx-b3-spanid: 123\r\ntraceparent: 00-zz-zz-01\r\nb3: \xff\xfe\r\n\r\n"))
        assert client_side.stats.get("tracing.malformed_trace_headers") >= 1
    assert response.status == 200
    forwarded = dict(json.loads(response.body)["headers"])
    assert forwarded["x-b3-traceid"] != "not-hex-at-all"


async def test_random_garbage_never_breaks_the_proxy(origin: Origin, caplog: pytest.LogCaptureFixture) -> None:
    generator = random.Random(7)
    pieces = [b"GET ", b"/x ", b"HTTP/1.1\r\n", b"Host: r\r\n", b"Content-Length: 5\r\n",
              b"Transfer-Encoding: chunked\r\n", b"\r\n", b"zz\r\n", b"\x00\xff", b"Expect: 100-continue\r\n",
              b"Connection: Upgrade\r\nUpgrade: websocket\r\n", b"CONNECT a:1 HTTP/1.1\r\n", b"0\r\n\r\n", b" "]
    async with pair(origin.port) as (client_side, server_side):
        for index in range(60):
            port = client_side.outbound_port if index % 2 else server_side.inbound_port
            payload = b"".join(generator.choice(pieces) for _ in range(generator.randint(1, 12)))
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(payload)
            await writer.drain()
            if index % 3 == 0:
                writer.transport.abort()
            else:
                writer.close()
        await asyncio.sleep(0.2)
        response = await request(client_side.outbound_port, b"GET /echo HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
    assert response.status == 200
    proxy_errors = [record for record in caplog.records  # the app behind may complain; the proxy may not
                    if record.name.startswith(("tracemesh", "asyncio")) and record.levelno >= logging.WARNING]
    assert proxy_errors == []


async def test_bytes_after_a_response_never_become_the_next_requests_response() -> None:
    """An upstream that sends more than the response asked for, in the same segment: a pipelined request given the
    connection as that response completes reads its own response, not those bytes (the connection's shared parser
    is not taken while a read is being parsed: exchange.py's ResponseCallbacks)."""

    async def stray_after_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(ok(b"one") + ok(b"stray"))  # one write: the second response was never asked for
        await read_request_head(reader)
        writer.write(ok(b"two"))
        await reader.read()

    async with RawOrigin(stray_after_first) as app, sidecar(server_config(app.port)) as server_side:
        first, second = await pipelined(
            server_side.inbound_port, b"GET /1 HTTP/1.1\r\nHost: r\r\n\r\nGET /2 HTTP/1.1\r\nHost: r\r\n\r\n", 2)
    assert (first.body, second.body) == (b"one", b"two")


async def test_a_pooled_connection_whose_parser_failed_after_a_response_serves_the_next_request() -> None:
    """Garbage after a complete response (the connection already back in the pool): the next request on that
    connection is read by a new parser, not by the one that failed (which would answer it 502)."""

    async def garbage_after_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(ok(b"one") + b"\x00not http\r\n\r\n")
        while True:
            await read_request_head(reader)
            writer.write(ok(b"next"))

    async with RawOrigin(garbage_after_first) as app, sidecar(server_config(app.port)) as server_side:
        first = await request(server_side.inbound_port, b"GET /1 HTTP/1.1\r\nHost: r\r\n\r\n")
        await asyncio.sleep(0.05)  # the garbage is read (and the parser fails) before the next request
        second = await request(server_side.inbound_port, b"GET /2 HTTP/1.1\r\nHost: r\r\n\r\n")
    assert (first.status, first.body) == (200, b"one")
    assert (second.status, second.body) == (200, b"next")
    assert app.connections == 1  # the same pooled connection
