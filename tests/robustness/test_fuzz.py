"""A seeded fuzz loop of garbage, truncated and mutated requests against the proxy process.

After every case a good request on a fresh connection must still be answered, and at the end
the process must be alive with the malformed requests counted.
"""

from __future__ import annotations

import random

from proxy_harness import request
from robust_harness import ProxyProcess, exchange

CASES = 300
BASES = (
    b"GET /fuzz?q=1 HTTP/1.1\r\nHost: reviews:9080\r\nUser-Agent: fuzz\r\nx-b3-traceid: 463ac35c9f6413ad\r\n"
    b"x-b3-spanid: a2fb4a1d1a96d312\r\nx-b3-sampled: 1\r\n\r\n",
    b"POST /fuzz HTTP/1.1\r\nHost: reviews\r\nContent-Length: 11\r\nConnection: keep-alive\r\n\r\nhello world",
    b"PUT /fuzz HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: chunked\r\ntraceparent: "
    b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET http://reviews:9080/abs HTTP/1.0\r\nb3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1\r\n\r\n",
)
NASTY = (b"\r", b"\n", b"\x00", b":", b" ", b"\t", b"\x7f", b"\xff", b"\x80", b";", b"0", b"f", b"-", b",")


def fuzz_case(rng: random.Random) -> bytes:
    """One hostile input: pure garbage, a truncated request, or a request with a few bytes changed."""
    kind = rng.randrange(4)
    base = rng.choice(BASES)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 200))
    if kind == 1:
        return base[: rng.randrange(1, len(base))]
    data = bytearray(base)
    for _ in range(rng.randrange(1, 4)):
        position = rng.randrange(len(data))
        if kind == 2:
            data[position:position + 1] = rng.choice(NASTY)
        else:
            data[position:position] = rng.choice(NASTY) * rng.randrange(1, 3)
    return bytes(data)


async def test_garbage_truncated_and_mutated_requests_never_break_the_proxy(proxy: ProxyProcess) -> None:
    rng = random.Random(20261121)
    good = b"GET /after HTTP/1.1\r\nHost: reviews\r\n\r\n"
    before = proxy.stats().get("inbound.downstream_rq_malformed", 0)
    for case in range(CASES):
        data = fuzz_case(rng)
        answer = await exchange(proxy.inbound_port, data, timeout_s=1.0, half_close=True)
        assert answer == b"" or answer.startswith(b"HTTP/1."), f"case {case}: {data!r} answered {answer[:80]!r}"
        response = await request(proxy.inbound_port, good, timeout_s=2.0)
        assert response.status == 200, f"after case {case} ({data!r}) a good request got {response.status}"
    assert proxy.alive()
    assert proxy.stats().get("inbound.downstream_rq_malformed", 0) > before


async def test_random_bytes_on_the_outbound_listener_get_a_400_and_the_next_request_works(
        proxy: ProxyProcess) -> None:
    rng = random.Random(7)
    for case in range(100):
        data = rng.randbytes(rng.randrange(1, 300))
        answer = await exchange(proxy.outbound_port, data, timeout_s=1.0, half_close=True)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), f"case {case}: {data!r} -> {answer[:80]!r}"
    response = await request(proxy.inbound_port, b"GET /still HTTP/1.1\r\nHost: reviews\r\n\r\n")
    assert response.status == 200
    assert proxy.alive()
    assert proxy.stats().get("outbound.downstream_rq_malformed", 0) > 0
