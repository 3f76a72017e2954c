"""A bare TCP relay on uvloop, the sidecar's event loop: the floor under any proxy written on it.

`python bench/relay.py LISTEN_PORT UPSTREAM_PORT`: each connection accepted on 127.0.0.1:LISTEN_PORT gets its own
connection to 127.0.0.1:UPSTREAM_PORT, and the bytes of each are written to the other as they arrive. No HTTP
parsing, no routing, no tracing, no telemetry: what is left is the event loop's reads, writes and wake-ups, and one
Python call per read. `python -m bench proxy` measures a pair of them beside the nginx pair and the tracemesh pair,
so that the part of the sidecar's cost the runtime sets, and the part its per-request work adds, show apart.

It is a benchmark peer, not a proxy: it applies no back-pressure (the load is request-response, one in flight per
connection) and keeps no limits.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import uvloop

HOST = "127.0.0.1"


class _Upstream(asyncio.Protocol):
    """The relay's connection to the upstream: what it sends goes to the downstream connection."""

    def __init__(self, downstream: asyncio.Transport) -> None:
        self._downstream = downstream

    def data_received(self, data: bytes) -> None:
        self._downstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._downstream.close()


class _Downstream(asyncio.Protocol):
    """A connection accepted: bytes that arrive before the upstream connection is up are held until it is."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._upstream: asyncio.Transport | None = None
        self._held: list[bytes] = []
        self._closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport has asyncio.Transport's methods without deriving from it.
        asyncio.get_running_loop().create_task(self._connect(cast(asyncio.Transport, transport)))

    async def _connect(self, downstream: asyncio.Transport) -> None:
        try:
            upstream, _ = await asyncio.get_running_loop().create_connection(
                lambda: _Upstream(downstream), HOST, self._upstream_port)
        except OSError:
            downstream.close()
            return
        if self._closed:
            upstream.close()
            return
        upstream.writelines(self._held)
        self._held.clear()
        self._upstream = upstream

    def data_received(self, data: bytes) -> None:
        if self._upstream is None:
            self._held.append(data)
        else:
            self._upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._upstream is not None:
            self._upstream.close()


async def serve(listen_port: int, upstream_port: int) -> None:
    server = await asyncio.get_running_loop().create_server(lambda: _Downstream(upstream_port), HOST, listen_port)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python bench/relay.py LISTEN_PORT UPSTREAM_PORT", file=sys.stderr)
        return 2
    uvloop.run(serve(int(argv[0]), int(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
