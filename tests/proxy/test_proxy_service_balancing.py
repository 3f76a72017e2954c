"""Transparent capture of traffic to a Service's ClusterIP: one endpoint per request, like Envoy with EDS.

The original destination is what iptables' REDIRECT leaves for SO_ORIGINAL_DST; here it is given
to the connection directly (the capture itself is tested in test_proxy_capture with real iptables).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from proxy_harness import RawOrigin, client_config, ok, read_request_head, read_response, sidecar

from tracemesh_sidecar.config import OutboundConfig, ServiceEntry
from tracemesh_sidecar.proxy import downstream
from tracemesh_sidecar.proxy.routing import Destination, OutboundRouter

VIP = ("10.96.0.7", 9080)
REVIEWS = "reviews.default.svc.cluster.local"


@pytest.fixture
def captured_to_vip(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every accepted connection looks REDIRECTed from the reviews ClusterIP."""
    monkeypatch.setattr(downstream, "original_destination", lambda sock: VIP)
    yield


def _config(endpoints: tuple[str, ...]) -> OutboundConfig:
    return OutboundConfig(services=(
        ServiceEntry(host=REVIEWS, port=9080, endpoints=endpoints, addresses=(VIP[0],)),
    ))


def test_router_picks_an_endpoint_per_request_for_a_known_service_address() -> None:
    router = OutboundRouter(client_config([], outbound=_config(("10.0.0.1:9080", "10.0.0.2:9081"))))
    picks = [router.transparent("whatever-host", VIP) for _ in range(3)]
    route = (f"{REVIEWS}:9080/*", f"outbound|9080||{REVIEWS}")
    assert picks == [Destination("10.0.0.1", 9080, *route), Destination("10.0.0.2", 9081, *route),
                     Destination("10.0.0.1", 9080, *route)]
    # Another port of the same address, or another address: where the client aimed, as before.
    assert router.transparent("reviews:9090", (VIP[0], 9090)) == Destination(
        VIP[0], 9090, f"{REVIEWS}:9090/*", f"outbound|9090||{REVIEWS}", decorated=False)
    assert router.transparent("", ("10.96.0.8", 9080)) == Destination(
        "10.96.0.8", 9080, "10.96.0.8:9080/*", "outbound|9080||10.96.0.8", decorated=False)


def test_router_has_no_destination_for_a_service_without_endpoints() -> None:
    router = OutboundRouter(client_config([], outbound=_config(())))
    assert router.transparent("reviews:9080", VIP) is None


async def _answer_with_name(name: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    for _ in range(50):  # keep-alive: every request on the connection, bounded
        await read_request_head(reader)
        writer.write(ok(name))
        await writer.drain()


async def test_requests_on_one_kept_alive_connection_are_spread_over_the_endpoints(captured_to_vip: None) -> None:
    async with RawOrigin(lambda r, w: _answer_with_name(b"one", r, w)) as one, \
            RawOrigin(lambda r, w: _answer_with_name(b"two", r, w)) as two:
        endpoints = (f"127.0.0.1:{one.port}", f"127.0.0.1:{two.port}")
        async with sidecar(client_config([], outbound=_config(endpoints))) as side:
            reader, writer = await asyncio.open_connection("127.0.0.1", side.outbound_port)
            try:
                answers = []
                for _ in range(6):
                    writer.write(b"GET /reviews/0 HTTP/1.1\r\nhost: reviews:9080\r\n\r\n")
                    answers.append((await asyncio.wait_for(read_response(reader), 5.0)).body)
            finally:
                writer.close()
            spans = await side.exporters.wait_spans(6)
    assert answers == [b"one", b"two"] * 3
    # One pooled connection per endpoint, reused: balancing costs no extra connects.
    assert (one.connections, two.connections) == (1, 1)
    assert {span.name for span in spans} == {f"{REVIEWS}:9080/*"}
    assert {span.tags["upstream_cluster"] for span in spans} == {f"outbound|9080||{REVIEWS}"}


async def test_a_service_without_endpoints_answers_503_uh(captured_to_vip: None) -> None:
    async with sidecar(client_config([], outbound=_config(()))) as side:
        reader, writer = await asyncio.open_connection("127.0.0.1", side.outbound_port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nhost: reviews:9080\r\n\r\n")
            response = await asyncio.wait_for(read_response(reader), 5.0)
        finally:
            writer.close()
        (span,) = await side.exporters.wait_spans(1)
    assert response.status == 503 and response.body == b"no healthy upstream"
    assert span.tags["response_flags"] == "UH"
