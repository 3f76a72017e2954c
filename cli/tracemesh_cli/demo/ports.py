"""Ports on 127.0.0.1: the fixed ones the user asked for must be free; the rest are picked by the kernel."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Collection, Mapping

from tracemesh_cli.demo.plan import LOOPBACK


class PortError(RuntimeError):
    """A port the demo needs is taken; the message names it, its flag and how to find the user."""


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As the servers will: a port whose old connections linger in TIME_WAIT counts as free.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, port))
        sock.listen(1)
    except OSError:
        sock.close()
        raise
    return sock


def check_free(ports: Mapping[str, tuple[int, str]]) -> None:
    """`ports` maps a flag such as `--port` to (its port, what listens there); port 0 means "any"."""
    for flag, (port, what) in ports.items():
        if port == 0:
            continue
        try:
            _listen(port).close()
        except OSError as error:
            raise PortError(f"port {port} ({what}) on {LOOPBACK} is not available ({error.strerror}); "
                            f"stop what uses it (`ss -ltnp 'sport = :{port}'` shows it) or pass {flag} "
                            "with another port (0 picks a free one)") from None


async def _listening(port: int) -> bool:
    if port == 0:
        return False
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), timeout=2.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def all_listening(ports: Mapping[str, tuple[int, str]]) -> bool:
    return all([await _listening(port) for port, _ in ports.values()])


async def check_listening(ports: Mapping[str, tuple[int, str]], fix: str) -> None:
    """Like `check_free`, the other way round: each port must already have a listener."""
    for flag, (port, what) in ports.items():
        if not await _listening(port):
            raise PortError(f"nothing listens on {LOOPBACK}:{port} ({what}, {flag}); {fix}")


def pick_free(count: int, exclude: Collection[int] = ()) -> list[int]:
    """`count` distinct ports that were free a moment ago, none of them in `exclude` (ports given to others).

    The sockets stay bound until all are chosen, so none is handed out twice; a port the kernel
    offers from `exclude` (free right now, but promised to a collector about to start) is skipped.
    """
    sockets: list[socket.socket] = []
    try:
        chosen: list[int] = []
        for _ in range(count + len(exclude) + 16):  # every excluded port can come up at most once
            if len(chosen) == count:
                break
            sockets.append(_listen(0))
            port = sockets[-1].getsockname()[1]
            if port not in exclude:
                chosen.append(port)
        if len(chosen) < count:
            raise PortError(f"could not find {count} free ports on {LOOPBACK}")
        return chosen
    finally:
        for sock in sockets:
            sock.close()
