"""Server-speaks-first protocols (MySQL, SMTP, SSH greet before the client says anything) through opaque tunnels.

Two ways they used to fail: the greeting reached the proxy before the tunnel was attached and the
upstream connection was dropped as a confused idle one; and a client that waits for the greeting
never sent the bytes the listener sniffs, so nothing was ever connected. Envoy's listener filter
timeout answers the second: after it, the connection is relayed as opaque TCP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace

import pytest
from proxy_harness import RawOrigin, client_config, server_config, sidecar

from tracemesh_sidecar.config import InboundConfig, InboundPort, OutboundConfig
from tracemesh_sidecar.proxy import downstream
from tracemesh_sidecar.proxy.upstream import Key, UpstreamConnection, UpstreamPool

GREETING = b"220 mail.example ESMTP ready\r\n"


async def greet_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An SMTP-like server: greets on accept, then answers each line."""
    writer.write(GREETING)
    await writer.drain()
    for _ in range(10):
        line = await reader.readline()
        if not line:
            return
        writer.write(b"250 got " + line)
        await writer.drain()


@pytest.fixture
def captured_to(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Connections look REDIRECTed from the address put in the list (SO_ORIGINAL_DST, as iptables leaves it)."""
    target: list[tuple[str, int]] = []
    monkeypatch.setattr(downstream, "original_destination", lambda sock: target[0] if target else None)
    yield target


async def test_a_greeting_that_arrives_before_the_tunnel_is_attached_reaches_the_client(
        captured_to: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch) -> None:
    connect = UpstreamPool.connect

    async def connect_after_the_greeting(self: UpstreamPool, key: Key, timeout_s: float) -> UpstreamConnection:
        # The race made certain: the tunnel is attached only once the greeting has been read.
        connection = await connect(self, key, timeout_s)
        for _ in range(200):  # at most 2 s
            if connection.early or connection.closed:
                break
            await asyncio.sleep(0.01)
        assert connection.early == [GREETING]
        return connection

    monkeypatch.setattr(UpstreamPool, "connect", connect_after_the_greeting)
    async with RawOrigin(greet_first) as server, sidecar(client_config([])) as side:
        captured_to.append(("127.0.0.1", server.port))
        reader, writer = await asyncio.open_connection("127.0.0.1", side.outbound_port)
        try:
            writer.write(b"\x00HELO client\n")  # not HTTP: an opaque tunnel is opened at once
            async with asyncio.timeout(5):
                assert await reader.readline() == GREETING
                assert await reader.readline() == b"250 got \x00HELO client\n"
        finally:
            writer.close()


@pytest.mark.parametrize("direction", ["outbound", "inbound"])
async def test_a_client_that_waits_for_the_greeting_gets_it_after_the_detection_timeout(
        captured_to: list[tuple[str, int]], direction: str) -> None:
    async with RawOrigin(greet_first) as server:
        if direction == "outbound":
            config = client_config([], outbound=OutboundConfig(protocol_detection_timeout_s=0.1))
        else:
            config = replace(server_config(server.port), inbound=InboundConfig(
                ports=(InboundPort(port=9080, app_port=server.port, listen="127.0.0.1:0"),),
                protocol_detection_timeout_s=0.1))
        async with sidecar(config) as side:
            if direction == "outbound":
                captured_to.append(("127.0.0.1", server.port))
            port = side.outbound_port if direction == "outbound" else side.inbound_port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                async with asyncio.timeout(5):
                    started = asyncio.get_running_loop().time()
                    assert await reader.readline() == GREETING  # the client has sent nothing at all
                    waited = asyncio.get_running_loop().time() - started
                    writer.write(b"QUIT\r\n")
                    assert await reader.readline() == b"250 got QUIT\r\n"
            finally:
                writer.close()
            assert side.stats.get(f"{direction}.downstream_cx_protocol_detection_timeout") == 1
    assert 0.1 <= waited < 2.0


async def test_without_a_known_destination_a_silent_client_is_left_waiting(
        captured_to: list[tuple[str, int]]) -> None:
    """The explicit outbound listener has nowhere to relay a silent client: no timer, no 400, it just waits."""
    async with sidecar(client_config([], outbound=OutboundConfig(protocol_detection_timeout_s=0.05))) as side:
        reader, writer = await asyncio.open_connection("127.0.0.1", side.outbound_port)
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(1), 0.3)
        finally:
            writer.close()
        assert side.stats.get("outbound.downstream_cx_protocol_detection_timeout") == 0
