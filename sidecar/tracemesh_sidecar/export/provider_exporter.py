"""The exporter of one provider: a bounded queue fed by the request path, drained by a background task.

The request path only appends to a deque. Batching, encoding and sending happen in a task of
the proxy's event loop, so a dead, slow or failing collector costs the request path nothing;
while that task waits on the collector, new spans keep queueing and, past `queue_size`, the
oldest are dropped and counted. Memory stays within `queue_size` spans plus the one batch in
flight.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque

from tracemesh_sidecar.config.model import ProviderConfig
from tracemesh_sidecar.export.collector_client import CollectorClient
from tracemesh_sidecar.export.error_log import RateLimitedLog
from tracemesh_sidecar.export.grpc_client import GrpcCollectorClient
from tracemesh_sidecar.export.http_client import HttpCollectorClient
from tracemesh_sidecar.export.retry import backoff_delay
from tracemesh_sidecar.export.wire import WireFormat, wire_format
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.stats import Stats

logger = logging.getLogger(__name__)


class ProviderExporter:
    def __init__(self, provider: ProviderConfig, stats: Stats) -> None:
        self.provider = provider
        self._stats = stats
        self._wire = wire_format(provider, os.environ)
        self._client = _client(provider, self._wire)
        self._log = RateLimitedLog(logger)
        self._capacity = provider.batch.queue_size
        self._max_spans = provider.batch.max_spans
        self._queue: deque[Span] = deque(maxlen=self._capacity)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._closed = False
        prefix = f"tracing.{provider.name}."
        self._submitted = stats.counter(prefix + "spans_submitted")
        self._sent = prefix + "spans_sent"
        self._dropped = prefix + "spans_dropped"
        self._dropped_queue_full = prefix + "spans_dropped_queue_full"
        self._dropped_export_failed = prefix + "spans_dropped_export_failed"
        self._dropped_rejected = prefix + "spans_dropped_rejected"
        self._dropped_closed = prefix + "spans_dropped_closed"
        self._export_errors = prefix + "export_errors"
        self._batches_sent = prefix + "batches_sent"
        self._queue_depth = prefix + "queue_depth"

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def submit(self, span: Span) -> None:
        """Queue a finished span. Called on the request path: O(1), no I/O, no awaiting, never raises."""
        try:
            if self._closed:
                self._count_dropped(self._dropped_closed, 1)
                return
            queue = self._queue
            if len(queue) == self._capacity:  # the deque's maxlen discards the oldest on append
                self._count_dropped(self._dropped_queue_full, 1)
            queue.append(span)
            self._submitted.inc()
            if self._task is None:
                self._start()
            elif len(queue) >= self._max_spans:
                self._wake.set()  # a full batch need not wait for the flush interval
        except Exception:  # a span lost is better than a request failed
            logger.exception("dropping a span: unexpected error queueing it for provider %s", self.provider.name)

    def _start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet (configuration time): the first submit on the loop starts the task
        self._task = loop.create_task(self._run(), name=f"tracemesh-export-{self.provider.name}")
        self._task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # Spans keep queueing (bounded, drops counted) but nothing sends them: say so loudly.
            logger.error("exporter for provider %s stopped", self.provider.name, exc_info=task.exception())

    async def close(self, timeout_s: float = 2.0) -> None:
        """Best effort: send what is queued within `timeout_s`, then count the rest as dropped.

        May be called again while closing (a shutdown overtaking a config change): the shorter
        deadline wins.
        """
        self._closing = True
        self._wake.set()
        if self._task is None and self._queue:
            self._start()
        task = self._task
        if task is not None and not task.done():
            done, _ = await asyncio.wait({task}, timeout=timeout_s)
            if not done:
                task.cancel()
                await asyncio.wait({task})
        self._closed = True
        self._drop_queued()
        await self._client.close()

    def discard(self) -> None:
        """Closes an exporter without flushing (no event loop to flush on); queued spans are counted dropped."""
        self._closing = self._closed = True
        self._drop_queued()

    def _drop_queued(self) -> None:
        if self._queue:
            self._count_dropped(self._dropped_closed, len(self._queue))
            self._queue.clear()

    def _count_dropped(self, reason: str, count: int) -> None:
        self._stats.inc(self._dropped, count)
        self._stats.inc(reason, count)

    def _publish_queue_depth(self) -> None:
        if not self._closing:  # once replaced, the gauge belongs to the exporter that replaced this one
            self._stats.set_gauge(self._queue_depth, len(self._queue))

    async def _run(self) -> None:
        queue, max_spans = self._queue, self._max_spans
        while True:
            timed_out = await self._wait_for_spans()
            self._publish_queue_depth()
            # Full batches go at once. When the flush interval runs out, what is queued then goes; spans that
            # arrive while it is sent wait for the next interval. A slow collector so gets one partial batch
            # per interval, as from OpenTelemetry's BatchSpanProcessor, not one per round trip.
            due = len(queue) if timed_out else 0
            while len(queue) >= max_spans or (queue and (due > 0 or self._closing)):
                batch = [queue.popleft() for _ in range(min(max_spans, len(queue)))]
                due -= len(batch)
                self._publish_queue_depth()
                try:
                    await self._export(batch)
                except asyncio.CancelledError:  # closed before the batch got through
                    self._count_dropped(self._dropped_closed, len(batch))
                    raise
            if self._closing and not queue:
                return

    async def _wait_for_spans(self) -> bool:
        """Waits for a full batch, closing, or the flush interval; True when the interval ran out."""
        if len(self._queue) >= self._max_spans or self._closing:
            return False
        self._wake.clear()
        try:
            async with asyncio.timeout(self.provider.batch.flush_interval_s):
                await self._wake.wait()
        except TimeoutError:
            return True
        return False

    async def _export(self, batch: list[Span]) -> None:
        try:
            body = self._wire.encode(batch)
        except Exception:  # a span the encoder cannot take must not stop the exporter
            logger.exception("dropping %d spans for provider %s: they could not be encoded",
                             len(batch), self.provider.name)
            self._count_dropped(self._dropped_export_failed, len(batch))
            return
        attempts = self.provider.batch.max_retries + 1
        for attempt in range(attempts):
            outcome = await self._client.export(body)
            if outcome.sent:
                # OTLP partial success: the rejected spans are dropped, never retried (the OTLP specification).
                rejected = min(outcome.rejected_spans, len(batch))
                self._stats.inc(self._sent, len(batch) - rejected)
                self._stats.inc(self._batches_sent)
                if rejected:
                    self._count_dropped(self._dropped_rejected, rejected)
                    self._log.warning(outcome.error, (
                        f"collector {self._client.url} rejected {rejected} of {len(batch)} spans for provider "
                        f"{self.provider.name}: {outcome.error}"))
                return
            self._stats.inc(self._export_errors)
            self._publish_queue_depth()
            if not outcome.retryable or attempt + 1 == attempts:
                self._log.warning(outcome.error, (
                    f"dropping {len(batch)} spans for provider {self.provider.name}: collector "
                    f"{self._client.url} failed after {attempt + 1} attempt(s): {outcome.error}"))
                break
            await asyncio.sleep(backoff_delay(attempt, outcome.retry_after_s))
        self._count_dropped(self._dropped_export_failed, len(batch))


def _client(provider: ProviderConfig, wire: WireFormat) -> CollectorClient:
    return GrpcCollectorClient(provider, wire) if provider.transport == "grpc" else HttpCollectorClient(provider, wire)
