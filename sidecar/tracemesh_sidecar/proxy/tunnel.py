"""An opaque byte pipe between a downstream and an upstream transport, each handed over to one of its ends.

Used for traffic that is not HTTP (passed through unharmed), for CONNECT, and after `101 Switching
Protocols`. The HTTP connections hand their transports over (`transport.set_protocol`) with what they
had read and not relayed; from then on the tunnel's two ends own the connections. Half-closes are
forwarded; the pipe closes when both directions have ended or either side is lost. A side that cannot
take more stops the other side being read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from tracemesh_sidecar.proxy.state import ListenerHandle


class Tunnel:
    __slots__ = ("_on_closed", "closed", "downstream", "received", "sent", "upstream")

    def __init__(self, downstream: asyncio.Transport, upstream: asyncio.Transport, listener: ListenerHandle,
                 on_closed: Callable[[Tunnel], None]) -> None:
        """`on_closed` hears once when the pipe is over (its byte counts final)."""
        self.received = 0  # bytes from downstream, and to it (Istio's TCP byte metrics)
        self.sent = 0
        self.closed = False
        self._on_closed = on_closed
        self.downstream = TunnelEnd(self, downstream, listener)
        self.upstream = TunnelEnd(self, upstream, None)
        self.downstream.peer = self.upstream
        self.upstream.peer = self.downstream

    def start(self, to_upstream: Sequence[bytes], to_downstream: Sequence[bytes], downstream_ended: bool) -> None:
        """Take both transports over; what each side said before goes first."""
        for end in (self.downstream, self.upstream):
            end.transport.set_protocol(end)
        if to_downstream:
            self.sent += sum(map(len, to_downstream))
            self.downstream.transport.writelines(to_downstream)
        if to_upstream:
            self.received += sum(map(len, to_upstream))
            self.upstream.transport.writelines(to_upstream)
        if downstream_ended:  # its EOF came before the tunnel: it is not read again (that would repeat the EOF)
            self.ended(self.downstream)
        for end in (self.downstream, self.upstream):
            if not end.eof_seen:
                end.resume()

    def relay(self, end: TunnelEnd, data: bytes) -> None:
        """Bytes from `end` go to its peer, counted."""
        if end is self.downstream:
            self.received += len(data)
        else:
            self.sent += len(data)
        end.peer.transport.write(data)

    def ended(self, end: TunnelEnd) -> None:
        """One side sent EOF: pass the half-close on, and close once both sides have."""
        if end.eof_seen:
            return
        end.eof_seen = True
        if end.peer.eof_seen or not end.peer.write_eof():
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.downstream.transport.close()
        self.upstream.transport.close()
        self._on_closed(self)

    def abort(self) -> None:
        self.downstream.transport.abort()
        self.upstream.transport.abort()
        self.close()


class TunnelEnd(asyncio.Protocol):
    """One transport of a tunnel. The downstream end stands for its connection in the listener's book (drain)."""

    __slots__ = ("_listener", "_tunnel", "eof_seen", "peer", "transport")

    def __init__(self, tunnel: Tunnel, transport: asyncio.Transport, listener: ListenerHandle | None) -> None:
        self._tunnel = tunnel
        self._listener = listener
        self.transport = transport
        self.peer: TunnelEnd = self
        self.eof_seen = False  # this side has sent its EOF

    # -- asyncio.Protocol
    def data_received(self, data: bytes) -> None:
        self._tunnel.relay(self, data)

    def eof_received(self) -> bool:
        self._tunnel.ended(self)
        return True  # the other direction may go on

    def connection_lost(self, exc: Exception | None) -> None:
        self._tunnel.close()

    def pause_writing(self) -> None:
        self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.peer.resume()

    # -- the listener's book (listeners.DownstreamSession)
    @property
    def listener(self) -> ListenerHandle:
        assert self._listener is not None
        return self._listener

    def discourage(self) -> None:
        """An opaque stream has no way to be asked to end: it runs until the drain's end."""

    def drain(self) -> None:
        """Shutdown: left to finish until the drain times out, then aborted."""

    def abort(self) -> None:
        self._tunnel.abort()

    # -- for the tunnel
    def resume(self) -> None:
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def write_eof(self) -> bool:
        transport = self.transport
        if transport.is_closing() or not transport.can_write_eof():
            return False
        transport.write_eof()
        return True
