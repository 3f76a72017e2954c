"""The original destination of a connection that iptables REDIRECTed to one of our listeners."""

from __future__ import annotations

import socket
import struct

# From <linux/netfilter_ipv4.h>: not exported by the socket module.
SO_ORIGINAL_DST = 80
_SOCKADDR_IN_SIZE = 16


def original_destination(sock: socket.socket) -> tuple[str, int] | None:
    """Where the client meant to connect, or None when the connection was not NAT-ed (or is not IPv4).

    The kernel answers with a `struct sockaddr_in`: family (2 bytes, host order), port (2 bytes,
    network order), IPv4 address (4 bytes), 8 bytes of padding.
    """
    if sock.family != socket.AF_INET:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN_SIZE)
    except OSError:  # ENOENT: no conntrack entry, i.e. a direct connection
        return None
    return parse_sockaddr_in(raw)


def parse_sockaddr_in(raw: bytes) -> tuple[str, int] | None:
    if len(raw) < 8:
        return None
    port, address = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(address), port
