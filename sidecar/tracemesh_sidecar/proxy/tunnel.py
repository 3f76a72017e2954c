"""An opaque byte pipe between a downstream and an upstream connection.

Used for traffic that is not HTTP/1.x (passed through unharmed), for CONNECT, and after
`101 Switching Protocols`. Half-closes are forwarded; the pipe closes when both directions
have ended or either side is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracemesh_sidecar.proxy.downstream import DownstreamConnection
    from tracemesh_sidecar.proxy.upstream import UpstreamConnection


class Tunnel:
    __slots__ = ("_downstream", "_ended", "closed", "on_closed", "received", "sent", "upstream")

    def __init__(self, downstream: DownstreamConnection, upstream: UpstreamConnection,
                 on_closed: Callable[[], None] | None = None) -> None:
        self._downstream = downstream
        self.upstream = upstream
        self.on_closed = on_closed
        self.received = 0  # bytes from downstream, and to it (Istio's TCP byte metrics)
        self.sent = 0
        self._ended = 0  # directions that saw EOF
        self.closed = False
        assert downstream.transport is not None and upstream.transport is not None
        upstream.exchange = None
        upstream.parser = None
        upstream.owner = downstream
        upstream.tunnel = self
        upstream.tunnel_peer = downstream.transport
        downstream.tunnel_peer = upstream.transport
        early = upstream.take_early()  # a server that spoke first (its greeting) speaks first here too
        if early:
            self.sent += sum(map(len, early))
            downstream.transport.writelines(early)

    def ended(self, from_upstream: bool) -> None:
        """One side sent EOF: pass the half-close on, and close once both sides have."""
        peer = self._downstream.transport if from_upstream else self.upstream.transport
        self._ended += 1
        if self._ended >= 2 or peer is None or not _write_eof(peer):
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.upstream.close()
        self._downstream.close()
        if self.on_closed is not None:
            self.on_closed()


def _write_eof(transport: asyncio.Transport) -> bool:
    if transport.is_closing() or not transport.can_write_eof():
        return False
    transport.write_eof()
    return True
