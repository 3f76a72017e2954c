"""Pipelined requests where an early one fails: answers stay in order and none is lost or mixed up."""

from __future__ import annotations

import asyncio

from proxy_harness import RawOrigin, client_config, pipelined, read_request_head, server_config, sidecar
from robust_harness import CountingOrigin, exchange, free_port, status_of


async def test_a_refused_first_request_is_503_uf_and_the_next_one_is_served(counting_origin: CountingOrigin) -> None:
    refused = free_port()
    async with sidecar(client_config([])) as client_side:
        first, second = await pipelined(
            client_side.outbound_port, b"GET http://127.0.0.1:%d/first HTTP/1.1\r\nHost: x\r\n\r\n" % refused
            + b"GET http://127.0.0.1:%d/second HTTP/1.1\r\nHost: x\r\n\r\n" % counting_origin.port, 2)
    assert first.status == 503
    assert second.status == 200 and second.body == b"ok:/second"


async def test_a_garbage_first_response_is_502_and_the_next_request_still_answered() -> None:
    async def broken_then_fine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = (await read_request_head(reader)).split(b" ")[1]
        if path == b"/broken":
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(path), path))
        await writer.drain()
        await reader.read()

    async with RawOrigin(broken_then_fine) as app, sidecar(server_config(app.port)) as server_side:
        first, second = await pipelined(server_side.inbound_port, b"GET /broken HTTP/1.1\r\nHost: r\r\n\r\n"
                                        b"GET /fine HTTP/1.1\r\nHost: r\r\n\r\n", 2)
    assert first.status == 502
    assert (second.status, second.body) == (200, b"/fine")


async def test_a_malformed_request_after_good_ones_answers_those_then_400(counting_origin: CountingOrigin) -> None:
    async with sidecar(server_config(counting_origin.port)) as server_side:
        answer = await exchange(server_side.inbound_port,
                                b"GET /one HTTP/1.1\r\nHost: r\r\n\r\nGET /two HTTP/1.1\r\nHost: r\r\n\r\n"
                                b"GET /three HTTP/1.1\r\nHost r\r\n\r\nGET /four HTTP/1.1\r\nHost: r\r\n\r\n")
        assert server_side.stats.get("inbound.downstream_rq_malformed") == 1
    assert answer.count(b"HTTP/1.1 200 OK") == 2 and b"ok:/one" in answer and b"ok:/two" in answer
    assert answer.index(b"ok:/one") < answer.index(b"ok:/two") < answer.index(b"HTTP/1.1 400")
    assert counting_origin.paths() == ["/one", "/two"]


async def test_a_malformed_first_request_stops_the_connection_before_anything_is_forwarded(
        counting_origin: CountingOrigin) -> None:
    async with sidecar(server_config(counting_origin.port)) as server_side:
        answer = await exchange(server_side.inbound_port, b"GET /one HTTP/1.1\r\nHost: r\r\nBad Header\r\n\r\n"
                                b"GET /two HTTP/1.1\r\nHost: r\r\n\r\n")
    assert status_of(answer) == 400 and answer.count(b"HTTP/1.1") == 1
    assert counting_origin.paths() == []


async def test_fifty_pipelined_requests_come_back_in_order(counting_origin: CountingOrigin) -> None:
    async with sidecar(server_config(counting_origin.port)) as server_side:
        responses = await pipelined(server_side.inbound_port, b"".join(
            b"GET /p%d HTTP/1.1\r\nHost: r\r\n\r\n" % index for index in range(50)), 50)
    assert [response.body for response in responses] == [b"ok:/p%d" % index for index in range(50)]


async def test_a_long_pipeline_in_one_write_is_answered_whole_and_in_order(counting_origin: CountingOrigin) -> None:
    """More requests than the proxy parses ahead (and more bytes than one parse step): all come back, in order."""
    async with sidecar(server_config(counting_origin.port)) as server_side:
        responses = await pipelined(server_side.inbound_port, b"".join(
            b"GET /q%d HTTP/1.1\r\nHost: r\r\n\r\n" % index for index in range(400)), 400, timeout_s=30)
    assert [response.body for response in responses] == [b"ok:/q%d" % index for index in range(400)]


async def test_bodies_and_pipelined_requests_in_one_write_keep_their_framing(counting_origin: CountingOrigin) -> None:
    big = b"b" * 100_000
    raw = (b"POST /big HTTP/1.1\r\nHost: r\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big)
           + b"".join(b"POST /small%d HTTP/1.1\r\nHost: r\r\nContent-Length: 3\r\n\r\nabc" % i for i in range(40))
           + b"POST /chunked HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n"
           + b"".join(b"2710\r\n%s\r\n" % (b"c" * 10000) for _ in range(3)) + b"0\r\n\r\n"
           + b"GET /last HTTP/1.1\r\nHost: r\r\n\r\n")
    async with sidecar(server_config(counting_origin.port)) as server_side:
        responses = await pipelined(server_side.inbound_port, raw, 43, timeout_s=30)
    assert [response.status for response in responses] == [200] * 43
    assert counting_origin.paths() == ["/big", *(f"/small{index}" for index in range(40)), "/chunked", "/last"]
    assert counting_origin.seen[0].body == big and counting_origin.seen[41].body == b"c" * 30000
