"""An open-loop, fixed-rate HTTP/1.1 load generator for latency at a given request rate.

wrk measures saturated throughput well but is closed-loop: at a fixed rate it would hide
queueing (coordinated omission). Here every request has a scheduled send time and its latency
is measured from that time, whether or not a connection was free. Written on asyncio
protocols with httptools so the generator's own cost stays small beside the proxies'.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

import httptools

from bench.processes import percentile


@dataclass
class LoadResult:
    sent: int
    completed: int
    errors: int
    latencies_ms: list[float]

    def percentile(self, fraction: float) -> float:
        return percentile(self.latencies_ms, fraction) if self.latencies_ms else float("nan")


class ParsedConnection(asyncio.Protocol):
    """A connection whose bytes go to httptools' `parser` (its callbacks are the subclass's methods); bytes it
    cannot parse close the connection, after `parse_failed`."""

    parser: httptools.HttpRequestParser | httptools.HttpResponseParser
    transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.parse_failed()
            if self.transport:
                self.transport.close()

    def parse_failed(self) -> None:
        pass


class _Connection(ParsedConnection):
    parser: httptools.HttpResponseParser

    def __init__(self, result: LoadResult) -> None:
        self.result = result
        self.waiting: deque[float] = deque()  # scheduled times of requests written, in order
        self.parser = httptools.HttpResponseParser(self)
        self.lost = asyncio.get_running_loop().create_future()

    def parse_failed(self) -> None:
        self.result.errors += len(self.waiting)
        self.waiting.clear()

    def on_message_complete(self) -> None:
        scheduled = self.waiting.popleft()
        self.result.completed += 1
        if self.parser.get_status_code() >= 500:
            self.result.errors += 1
        self.result.latencies_ms.append((time.perf_counter() - scheduled) * 1000.0)

    def connection_lost(self, exc: Exception | None) -> None:
        self.result.errors += len(self.waiting)
        self.waiting.clear()
        if not self.lost.done():
            self.lost.set_result(None)

    @property
    def busy(self) -> bool:
        return bool(self.waiting)

    def send(self, request: bytes, scheduled: float) -> None:
        assert self.transport is not None
        self.waiting.append(scheduled)
        self.transport.write(request)


async def run_fixed_rate(host: str, port: int, request: bytes, rate: float, seconds: float,
                         connections: int = 32) -> LoadResult:
    """Send `request` at `rate` per second for `seconds`; latency counted from each scheduled time."""
    loop = asyncio.get_running_loop()
    result = LoadResult(sent=0, completed=0, errors=0, latencies_ms=[])
    pool = [(await loop.create_connection(lambda: _Connection(result), host, port))[1] for _ in range(connections)]
    backlog: deque[float] = deque()  # scheduled but not yet written: every connection was busy
    start = time.perf_counter()
    interval = 1.0 / rate
    total = int(rate * seconds)
    next_index = 0
    while next_index < total or backlog:
        now = time.perf_counter()
        while next_index < total and start + next_index * interval <= now:
            backlog.append(start + next_index * interval)
            next_index += 1
        for connection in pool:
            if not backlog:
                break
            if not connection.busy and not connection.lost.done():
                connection.send(request, backlog.popleft())
                result.sent += 1
        if now - start > seconds * 3 + 10:  # a stuck peer must not hang the benchmark
            result.errors += len(backlog)
            break
        await asyncio.sleep(min(interval, 0.001))
    deadline = time.perf_counter() + 5
    while any(c.busy for c in pool) and time.perf_counter() < deadline:
        await asyncio.sleep(0.005)
    for connection in pool:
        if connection.transport:
            connection.transport.close()
    return result
