"""All of a proxy's exporters, one per provider name, following configuration changes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tracemesh_sidecar.config.model import ProviderConfig
from tracemesh_sidecar.export.provider_exporter import ProviderExporter
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.stats import Stats


class ExporterSet:
    def __init__(self, stats: Stats) -> None:
        self._stats = stats
        self._exporters: dict[str, ProviderExporter] = {}
        self._retiring: dict[ProviderExporter, asyncio.Task[None]] = {}

    def apply(self, providers: Sequence[ProviderConfig]) -> None:
        """Take a new provider list: unchanged providers keep their exporter (and its queue);
        changed or removed ones are retired, flushing what they hold in the background."""
        wanted = {provider.name: provider for provider in providers}
        for name, exporter in list(self._exporters.items()):
            if wanted.get(name) != exporter.provider:
                del self._exporters[name]
                self._retire(exporter)
        for name, provider in wanted.items():
            if name not in self._exporters:
                self._exporters[name] = ProviderExporter(provider, self._stats)

    def submit(self, provider_name: str, span: Span) -> None:
        """Hand a finished span to its provider's queue: O(1), never blocks, never raises."""
        exporter = self._exporters.get(provider_name)
        if exporter is not None:
            exporter.submit(span)
            return
        # Only reachable while a config naming a removed provider is still finishing requests.
        self._stats.inc(f"tracing.{provider_name}.spans_dropped")
        self._stats.inc(f"tracing.{provider_name}.spans_dropped_unknown_provider")

    def queue_depth(self, provider_name: str) -> int | None:
        exporter = self._exporters.get(provider_name)
        return exporter.queue_depth if exporter is not None else None

    async def close(self, timeout_s: float = 2.0) -> None:
        """Best-effort flush of every exporter, the retiring ones included, within `timeout_s`."""
        exporters = [*self._exporters.values(), *self._retiring]
        self._exporters.clear()
        await asyncio.gather(*(exporter.close(timeout_s) for exporter in exporters))

    def _retire(self, exporter: ProviderExporter) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            exporter.discard()  # reconfigured before any loop ran: nothing was started, nothing to flush with
            return
        task = loop.create_task(exporter.close(exporter.provider.timeout_s))
        self._retiring[exporter] = task
        task.add_done_callback(lambda _: self._retiring.pop(exporter, None))
