"""Low-level pieces of the pods-as-network-namespaces harness: commands, sockets inside a
namespace, and a `kubectl port-forward` equivalent.

The test process itself stays in the host's network namespace and never adds an address
or a rule there: it reaches into a namespace by creating a socket while one thread is
switched into it (a socket belongs to the namespace it was created in, for life).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import subprocess
import threading
from collections.abc import Sequence

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class CommandError(RuntimeError):
    pass


def run(argv: Sequence[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise CommandError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def netns_socket(netns: str, kind: socket.SocketKind = socket.SOCK_STREAM) -> socket.socket:
    """An IPv4 socket that lives in `netns` (a name under /run/netns)."""
    result: list[socket.socket | BaseException] = []

    def create() -> None:
        # setns() moves only this thread, which ends right after: the test's threads stay put.
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {netns}")
                result.append(socket.socket(socket.AF_INET, kind))
            finally:
                os.close(fd)
        except BaseException as error:  # handed to the calling thread
            result.append(error)

    thread = threading.Thread(target=create, name=f"setns-{netns}")
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


async def open_connection(netns: str, host: str, port: int,
                          timeout_s: float = 5.0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = netns_socket(netns)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout_s)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


def listening_socket(netns: str, port: int, host: str = "0.0.0.0") -> socket.socket:
    sock = netns_socket(netns)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class PortForward:
    """`kubectl port-forward`: 127.0.0.1:<ephemeral> in the test's namespace -> host:port seen from `netns`."""

    def __init__(self, netns: str, host: str, port: int) -> None:
        self.netns, self.host, self.port = netns, host, port
        self.local_port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    async def __aenter__(self) -> PortForward:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        self.local_port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    async def _forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            reader, writer = await open_connection(self.netns, self.host, self.port)
        except OSError:
            client_writer.close()
            return
        pipes = [asyncio.ensure_future(_pipe(client_reader, writer)),
                 asyncio.ensure_future(_pipe(reader, client_writer))]
        self._pipes.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._pipes.difference_update(pipes)
            for stream in (writer, client_writer):
                with contextlib.suppress(Exception):
                    stream.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: the other direction may still be talking
    except (ConnectionError, OSError):
        pass
