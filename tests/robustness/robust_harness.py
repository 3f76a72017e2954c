"""Hostile-client and broken-upstream helpers: a strict counting origin, a proxy subprocess, /proc probes.

Everything binds 127.0.0.1 with ports the kernel picks; every wait here has a time bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import httptools
from proxy_harness import server_config

from bench.processes import settled
from tracemesh_sidecar.config.model import InboundConfig, InboundPort, Listeners, dump_proxy_config


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes


class _OriginConnection:
    """httptools callbacks for one origin connection: what a strict HTTP/1.1 server parses from the wire."""

    def __init__(self, origin: CountingOrigin, writer: asyncio.StreamWriter) -> None:
        self.origin = origin
        self.writer = writer
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.answered = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.url.startswith(b"/early"):  # answers before reading the body
            self.answered = True
            self.writer.write(_response(b"early"))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        path = self.url.decode("latin-1")
        self.origin.seen.append(SeenRequest(self.parser.get_method().decode("latin-1"), path, self.headers,
                                            b"".join(self.body)))
        self.url, self.headers, self.body = b"", [], []
        if self.answered:
            self.answered = False
        elif path.startswith("/close"):
            self.writer.write(_response(b"bye", b"connection: close\r\n"))
            self.writer.close()
        else:
            self.writer.write(_response(b"ok:" + path.encode("latin-1")))


def _response(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@dataclass
class CountingOrigin:
    """An origin that parses strictly and records every request it sees (to count what the proxy forwarded).

    Paths: `/early...` is answered on its head, before any body; `/close...` is answered with
    `connection: close`; anything else gets `200 ok:<path>` once complete.
    """

    seen: list[SeenRequest] = field(default_factory=list)
    parse_errors: list[str] = field(default_factory=list)
    connections: int = 0
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> CountingOrigin:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        return self

    async def __aenter__(self) -> CountingOrigin:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def paths(self) -> list[str]:
        return [request.path for request in self.seen]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = _OriginConnection(self, writer)
        try:
            while data := await reader.read(65536):
                connection.parser.feed_data(data)
                if writer.is_closing():
                    break
        except httptools.HttpParserError as error:
            self.parse_errors.append(str(error))
            writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        except (ConnectionError, httptools.HttpParserUpgrade):
            pass
        finally:
            writer.close()


class ServingOrigin(Protocol):
    """An origin that starts serving on the running loop (CountingOrigin, h2_harness.H2Origin)."""

    server: asyncio.Server | None

    async def start(self) -> object: ...


OriginT = TypeVar("OriginT", bound=ServingOrigin)


class ThreadedOrigin(Generic[OriginT]):
    """An origin on its own event loop thread, so it outlives each test's loop (session fixtures)."""

    def __init__(self, origin: OriginT) -> None:
        self.origin = origin
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="robustness-origin", daemon=True)

    def __enter__(self) -> OriginT:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.origin.start(), self._loop).result(5)
        return self.origin

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self.origin.server is not None:
                self.origin.server.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ProxyProcess:
    """`tracemesh proxy --config FILE` as a child process: an outbound listener and an inbound one to the origin."""

    process: subprocess.Popen[bytes]
    outbound_port: int
    inbound_port: int
    admin_port: int
    health_port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stats(self) -> dict[str, float]:
        text = _get(self.admin_port, "/stats")
        return {name: float(value) for name, _, value in (line.partition(": ") for line in text.splitlines())}

    def clusters(self) -> dict[str, object]:
        result: dict[str, object] = json.loads(_get(self.admin_port, "/clusters"))
        return result

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    async def quiescent(self, settle_s: float = 1.0, limit_s: float = 30.0) -> bool:
        """Wait until the proxy spends no CPU for settle_s (done with whatever it has read); False at the limit."""
        return await settled(self.pid, time.monotonic() + limit_s, settle_s)

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")


def _get(port: int, path: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as response:
        text: str = response.read().decode()
        return text


@contextlib.contextmanager
def proxy_process(app_port: int, directory: Path) -> Iterator[ProxyProcess]:
    """Start the proxy (retrying if a picked port was taken meanwhile) and stop it with SIGTERM."""
    for _attempt in range(3):
        ports = [free_port() for _ in range(4)]
        outbound, inbound, admin, health = ports
        config = server_config(app_port)
        config = replace(
            config,
            listeners=Listeners(outbound=f"127.0.0.1:{outbound}", inbound=None, admin=f"127.0.0.1:{admin}",
                                health=f"127.0.0.1:{health}", prometheus=None),
            inbound=InboundConfig(ports=(InboundPort(port=9080, app_port=app_port, listen=f"127.0.0.1:{inbound}"),)),
        )
        path = directory / "proxy.json"
        path.write_text(json.dumps(dump_proxy_config(config)))
        log_path = directory / "proxy.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tracemesh_cli.main", "proxy", "--config", str(path), "--drain-timeout", "1"],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        handle = ProxyProcess(process, outbound, inbound, admin, health, log_path)
        if _wait_ready(handle):
            break
        _stop(process)
    else:
        raise AssertionError(f"the proxy did not become ready:\n{log_path.read_text()}")
    try:
        yield handle
    finally:
        _stop(process)


def _wait_ready(handle: ProxyProcess, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and handle.alive():
        with contextlib.suppress(OSError):
            if _get(handle.health_port, "/healthz/ready", 1.0).startswith("LIVE"):
                return True
        time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def exchange(port: int, raw: bytes, timeout_s: float = 2.0, half_close: bool = False) -> bytes:
    """Send `raw` on a new connection and return every byte the proxy answers until it closes (or the timeout)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()
    try:
        writer.write(raw)
        if half_close:
            writer.write_eof()
        async with asyncio.timeout(timeout_s):
            while chunk := await reader.read(65536):
                received += chunk
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.transport.abort()
    return bytes(received)


def status_of(answer: bytes) -> int | None:
    """The status of the first response in `answer`, None when there is none."""
    if not answer.startswith(b"HTTP/1."):
        return None
    return int(answer.split(b" ", 2)[1])


def listening_hosts(port: int) -> set[str]:
    """The local addresses with a listening TCP socket on `port` (from /proc/net/tcp and tcp6)."""
    hosts = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, _, port_hex = local.rpartition(":")
                if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                    hosts.add(_proc_address(address))
    return hosts


def _proc_address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    # /proc prints the address as 32-bit words in host (little-endian) order.
    words = b"".join(raw[index:index + 4][::-1] for index in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(words) == 4 else socket.AF_INET6, words)
