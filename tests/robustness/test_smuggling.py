"""Request smuggling: whatever the proxy takes for one request, the upstream must see as at most one request.

The origin parses strictly (httptools) and records every request it completes; `/smuggled` must never
reach it unless the proxy itself answered it as a request of its own.
"""

from __future__ import annotations

import asyncio

import pytest
from proxy_harness import read_response, server_config, sidecar
from robust_harness import CountingOrigin, exchange, status_of

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: reviews\r\n\r\n"


async def _through_sidecar(origin: CountingOrigin, raw: bytes) -> bytes:
    async with sidecar(server_config(origin.port)) as server_side:
        answer = await exchange(server_side.inbound_port, raw, timeout_s=1.0)
        assert server_side.runtime.ready
    return answer


@pytest.mark.parametrize("raw", [
    pytest.param(b"POST /a HTTP/1.1\r\nHost: reviews\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"0\r\n\r\n" + SMUGGLED, id="CL.TE"),
    pytest.param(b"POST /a HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: chunked\r\nContent-Length: 41\r\n\r\n"
                 b"0\r\n\r\n" + SMUGGLED, id="TE.CL"),
    pytest.param(b"POST /a HTTP/1.1\r\nHost: reviews\r\nContent-Length: 0\r\nContent-Length: 41\r\n\r\n" + SMUGGLED,
                 id="two-content-lengths"),
    pytest.param(b"POST /a HTTP/1.1\r\nHost: reviews\r\nContent-Length: 41, 0\r\n\r\n" + SMUGGLED,
                 id="content-length-list"),
    pytest.param(b"POST /a HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
                 id="space-before-colon"),
    pytest.param(b"POST /a HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n"
                 b"0\r\n\r\n" + SMUGGLED, id="te-xchunked"),
    pytest.param(b"POST /a HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
                 b"0\r\n\r\n" + SMUGGLED, id="te-chunked-not-last"),
    pytest.param(b"POST /a HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
                 + SMUGGLED, id="invalid-chunk-size"),
    pytest.param(b"POST /a HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n" + SMUGGLED, id="chunk-size-overflow"),
    pytest.param(b"POST /a HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"
                 + SMUGGLED, id="negative-chunk-size"),
    pytest.param(b"POST /a HTTP/1.1\r\nHost: reviews\r\nContent-Length: -1\r\n\r\n" + SMUGGLED,
                 id="negative-content-length"),
])
async def test_ambiguous_framing_is_refused_with_400_and_nothing_reaches_the_app(
        counting_origin: CountingOrigin, raw: bytes) -> None:
    answer = await _through_sidecar(counting_origin, raw)
    assert status_of(answer) == 400, answer[:200]
    assert counting_origin.paths() == []


async def test_chunk_extensions_are_dropped_and_the_body_forwarded_once(counting_origin: CountingOrigin) -> None:
    answer = await _through_sidecar(counting_origin, (
        b"POST /ext HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5;name=value;x=\"0\\r\\n\\r\\nGET /smuggled\"\r\nhello\r\n0;last\r\n\r\n"))
    assert status_of(answer) == 200
    assert counting_origin.paths() == ["/ext"]
    assert counting_origin.seen[0].body == b"hello"


async def test_an_obs_folded_header_is_refused_or_unfolded(counting_origin: CountingOrigin) -> None:
    answer = await _through_sidecar(counting_origin, (
        b"GET /fold HTTP/1.1\r\nHost: reviews\r\nX-Folded: first\r\n second\r\nConnection: close\r\n\r\n"))
    status = status_of(answer)
    assert status in (200, 400)
    if status == 200:
        assert counting_origin.paths() == ["/fold"]
        values = [value for _, value in counting_origin.seen[0].headers]
        assert all("\r" not in value and "\n" not in value for value in values)
    else:
        assert counting_origin.paths() == []


async def test_bare_lf_line_ends_are_normalised_not_passed_on(counting_origin: CountingOrigin) -> None:
    answer = await _through_sidecar(counting_origin, b"GET /lf HTTP/1.1\nHost: reviews\nConnection: close\n\n")
    assert status_of(answer) in (200, 400)
    assert counting_origin.paths() in (["/lf"], [])


async def test_request_trailers_never_leak_into_the_next_request(counting_origin: CountingOrigin) -> None:
    """A connection shared by many callers (a gateway's pool) must not carry one caller's trailer to the next."""
    async with sidecar(server_config(counting_origin.port)) as server_side:
        reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
        writer.write(b"POST /first HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n0\r\nx-trailer: evil\r\n\r\n")
        assert (await asyncio.wait_for(read_response(reader), 2)).status == 200
        writer.write(b"GET /second HTTP/1.1\r\nHost: reviews\r\n\r\n")
        assert (await asyncio.wait_for(read_response(reader), 2)).status == 200
        writer.close()
    second = counting_origin.seen[-1]
    assert second.path == "/second"
    assert "x-trailer" not in dict(second.headers)


@pytest.mark.parametrize("raw", [
    pytest.param(b"GET /two-hosts HTTP/1.1\r\nHost: reviews\r\nHost: admin.internal\r\nConnection: close\r\n\r\n",
                 id="two-hosts"),
    pytest.param(b"GET /no-host HTTP/1.1\r\nConnection: close\r\n\r\n", id="no-host"),
])
async def test_an_ambiguous_or_missing_host_is_400(counting_origin: CountingOrigin, raw: bytes) -> None:
    answer = await _through_sidecar(counting_origin, raw)
    assert status_of(answer) == 400
    assert counting_origin.paths() == []


async def test_an_http10_request_without_host_is_served(counting_origin: CountingOrigin) -> None:
    answer = await _through_sidecar(counting_origin, b"GET /old HTTP/1.0\r\n\r\n")
    assert status_of(answer) == 200
    assert counting_origin.paths() == ["/old"]
