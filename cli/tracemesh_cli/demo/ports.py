"""Ports on 127.0.0.1: the fixed ones the user asked for must be free; the rest are picked by the kernel."""

from __future__ import annotations

import socket
from collections.abc import Mapping

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


def pick_free(count: int) -> list[int]:
    """`count` distinct ports that were free a moment ago (held together so none is handed out twice)."""
    sockets = [_listen(0) for _ in range(count)]
    try:
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
