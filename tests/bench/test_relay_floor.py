"""bench/relay.py, the bare uvloop relay `python -m bench proxy` measures as the floor under the sidecar: it relays
real HTTP exchanges both ways over kept-alive connections, bytes sent before its upstream connection is up
included; and the report's ratios against nginx and against it."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from bench.processes import free_port, started
from bench.proxy import RELAY, RELAY_PATH, PathResult, ProxyCost, _floor_report

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"


@pytest.fixture
def origin() -> Iterator[int]:
    """An HTTP origin in a thread, one connection at a time: answers each request it reads whole with RESPONSE."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])

    def serve() -> None:
        with listener:
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                with connection:
                    pending = b""
                    while chunk := connection.recv(65536):
                        pending += chunk
                        while b"\r\n\r\n" in pending:
                            head, _, rest = pending.partition(b"\r\n\r\n")
                            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]) \
                                if b"content-length: " in head.lower() else 0
                            if len(rest) < length:
                                break
                            pending = rest[length:]
                            connection.sendall(RESPONSE)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    listener.close()


def read_response(client: socket.socket) -> bytes:
    received = b""
    while len(received) < len(RESPONSE):
        chunk = client.recv(65536)
        assert chunk, "the relay closed the connection"
        received += chunk
    return received


def test_the_relay_carries_requests_both_ways_on_one_kept_alive_connection(origin: int) -> None:
    port = free_port()
    with started("relay", [*RELAY, str(port), str(origin)], port), \
            socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        # Sent at once, on a new connection: the relay may not have its upstream yet, and holds them.
        client.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc")
        assert read_response(client) == RESPONSE
        for _ in range(3):
            client.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            assert read_response(client) == RESPONSE


def test_the_relay_refuses_a_wrong_command_line() -> None:
    result = subprocess.run([*RELAY, "9"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "usage" in result.stderr


def _path(name: str, saturated: tuple[float, float], fixed: tuple[float, float]) -> PathResult:
    return PathResult(name, 1000.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0, proxies=[
        ProxyCost(f"{name} client", saturated[0], fixed[0], 50.0),
        ProxyCost(f"{name} server", saturated[1], fixed[1], 50.0)])


def test_the_floor_report_gives_each_sidecar_against_nginx_and_the_relay() -> None:
    mesh = _path("tracemesh pair", (200.0, 210.0), (300.0, 330.0))
    nginx = _path("nginx pair", (40.0, 42.0), (100.0, 110.0))
    relay = _path(RELAY_PATH, (50.0, 35.0), (150.0, 110.0))
    lines = _floor_report([mesh], [nginx], [relay])
    assert lines[1] == "  client sidecar: 5.0x / 3.0x nginx's, 4.0x / 2.0x the relay's; the relay: 1.2x / 1.5x nginx's"
    assert lines[2] == "  server sidecar: 5.0x / 3.0x nginx's, 6.0x / 3.0x the relay's; the relay: 0.8x / 1.0x nginx's"
    assert _floor_report([mesh], [nginx], None) == []


def test_the_floor_report_takes_each_ratio_within_a_round_and_gives_the_median_and_range() -> None:
    """nginx twice as dear in the second round (a busy minute): the ratios stay those of the proxies."""
    mesh = [_path("tracemesh pair", (200.0, 210.0), (300.0, 330.0)),
            _path("tracemesh pair", (440.0, 420.0), (600.0, 660.0)),
            _path("tracemesh pair", (180.0, 210.0), (330.0, 330.0))]
    nginx = [_path("nginx pair", (40.0, 42.0), (100.0, 110.0)), _path("nginx pair", (80.0, 84.0), (200.0, 220.0)),
             _path("nginx pair", (40.0, 42.0), (100.0, 110.0))]
    relay = [_path(RELAY_PATH, (50.0, 35.0), (150.0, 110.0))] * 3
    lines = _floor_report(mesh, nginx, relay)
    assert lines[1].startswith("  client sidecar: 5.0x (4.5x to 5.5x) / 3.0x (3.0x to 3.3x) nginx's, ")
    assert lines[2].startswith("  server sidecar: 5.0x / 3.0x nginx's, ")
    assert lines[2].endswith("the relay: 0.8x (0.4x to 0.8x) / 1.0x (0.5x to 1.0x) nginx's")
