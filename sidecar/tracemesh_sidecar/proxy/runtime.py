"""The running proxy: `await Runtime(stats).apply(config)` is the one way a config takes effect.

Config sources (the file watcher in `tracemesh proxy --config`, the discovery client) call
apply() with each new ProxyConfig. apply() builds the per-direction contexts (tracers, routes,
timeouts) and swaps them in whole, tells the exporters the providers, and (re)binds only the
listeners whose address changed. Established connections are never dropped; a request in
flight finishes on the context it started with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from tracemesh_sidecar.admin import AdminServers
from tracemesh_sidecar.config.model import ProviderConfig, ProxyConfig
from tracemesh_sidecar.export import ExporterSet
from tracemesh_sidecar.proxy.drain import wait_for_drain
from tracemesh_sidecar.proxy.http2.upstream import Http2Pool
from tracemesh_sidecar.proxy.listeners import ConnectionBook, Listener, ListenerSpec, listener_specs
from tracemesh_sidecar.proxy.state import DirectionContext, SpanSink
from tracemesh_sidecar.proxy.termination import DrainPlan
from tracemesh_sidecar.proxy.upstream import UpstreamPool
from tracemesh_sidecar.proxy.upstream_stream import Http1StreamOpener
from tracemesh_sidecar.stats import Stats
from tracemesh_sidecar.telemetry.metrics import MetricStore
from tracemesh_sidecar.telemetry.recorder import DirectionTelemetry
from tracemesh_sidecar.telemetry.sink import LogFiles

log = logging.getLogger("tracemesh.proxy")


class Exporters(SpanSink, Protocol):
    """tracemesh_sidecar.export.ExporterSet, or a test's stand-in."""

    def apply(self, providers: Sequence[ProviderConfig]) -> None: ...

    async def close(self, timeout_s: float = 2.0) -> None: ...


class ListenerError(OSError):
    """A listener address could not be bound; the config was not applied."""


class Runtime:
    def __init__(self, stats: Stats, exporters: Exporters | None = None) -> None:
        self.stats = stats
        self.exporters: Exporters = exporters if exporters is not None else ExporterSet(stats)
        self.pool = UpstreamPool(stats)
        self.h2_pool = Http2Pool(stats)
        self.h1_streams = Http1StreamOpener(self.pool)
        # Istio's standard metrics (on 15090 with the proxy's own counters) and the open access-log files:
        # both outlive config pushes, which only change what is recorded.
        self.metrics = MetricStore()
        self.log_files = LogFiles(stats)
        self.config: ProxyConfig | None = None
        self._contexts: dict[str, DirectionContext] = {}
        self._listeners: dict[ListenerSpec, Listener] = {}
        self._book = ConnectionBook(stats)
        self.admin = AdminServers(self)
        self._draining = False

    @property
    def ready(self) -> bool:
        """A config is in force, its listeners are up, and the proxy is not shutting down."""
        return self.config is not None and not self._draining

    async def apply(self, config: ProxyConfig) -> None:
        """Put `config` in force. Raises ListenerError when a new address cannot be bound (the old config stays)."""
        # A gateway's listeners read the "outbound" slot, which then holds the router's context.
        router = config.proxy_type == "router"
        telemetry = {direction: DirectionTelemetry(config, direction, self.metrics, self.log_files)
                     for direction in ("inbound", "outbound")}
        contexts = {direction: DirectionContext(config, "gateway" if router and direction == "outbound" else direction,
                                                self.stats, self.h1_streams, self.h2_pool, self.exporters,
                                                telemetry[direction])
                    for direction in ("inbound", "outbound")}
        # Draining: inbound listeners stay closed whatever a new config says.
        wanted = [spec for spec in listener_specs(config) if not (self._draining and spec.direction == "inbound")]
        added = [spec for spec in wanted if spec not in self._listeners]
        removed = [spec for spec in self._listeners if spec not in wanted]
        previous = dict(self._contexts)
        self._contexts.update(contexts)  # in place: listeners read this dict per request
        # An address moving between listener kinds must be freed before it is bound again.
        added_addresses = {spec.address for spec in added}
        for spec in removed:
            if spec.address in added_addresses:
                self._listeners.pop(spec).stop_accepting()
        started: list[Listener] = []
        try:
            for spec in added:
                listener = Listener(spec, self._contexts, self._book, self.pool)
                await listener.start()
                started.append(listener)
            await self.admin.apply(config.listeners)
        except OSError as error:
            for listener in started:
                listener.stop_accepting()
            self._contexts.clear()
            self._contexts.update(previous)
            raise ListenerError(error.errno, f"cannot listen: {error.strerror or error}; config version "
                                f"{config.version} not applied (free the port or change listeners)") from error
        for listener in started:
            self._listeners[listener.spec] = listener
        for spec in removed:
            if spec in self._listeners:
                self._listeners.pop(spec).stop_accepting()
        self.exporters.apply(config.providers)
        for recorder in telemetry.values():
            recorder.retire_disabled()
        first = self.config is None
        self.config = config
        log.info("config version %s %s: %s", config.version, "in force" if first else "applied",
                 ", ".join(f"{spec.kind} {spec.address}" for spec in wanted) or "no data-path listeners")

    def listener_port(self, kind: str, service_port: int | None = None) -> int:
        """The port a listener is bound to (tests bind port 0)."""
        for spec, listener in self._listeners.items():
            if spec.kind == kind and spec.service_port == service_port:
                return listener.bound_port
        raise KeyError(f"no {kind} listener")

    def clusters(self) -> dict[str, object]:
        """Routes and pool state for `GET /clusters`."""
        config = self.config
        services = [] if config is None else [
            {"host": entry.host, "port": entry.port, "endpoints": list(entry.endpoints)}
            for entry in config.outbound.services
        ]
        return {"outbound_services": services, "idle_connections": self.pool.idle_counts(),
                "open_upstream_connections": self.pool.open_connections,
                "open_downstream_connections": len(self._book.open)}

    @property
    def draining(self) -> bool:
        return self._draining

    def drain_inbound(self) -> None:
        """Envoy's `drain_listeners?inboundonly&graceful` as pilot-agent asks for it: not ready any more,
        no new inbound connection, open inbound ones told `connection: close`; outbound serves on."""
        if self._draining:
            return
        self._draining = True
        for spec in [spec for spec in self._listeners if spec.direction == "inbound"]:
            self._listeners.pop(spec).stop_accepting()
        self._book.discourage("inbound")
        log.info("draining inbound: listeners closed, open connections told to close; outbound still serving")

    async def terminate(self, plan: DrainPlan, flush_timeout_s: float = 2.0) -> None:
        """SIGTERM (pkg/envoy/agent.go terminate()): drain inbound, keep outbound serving for `plan`'s
        duration, then stop, flushing spans. Already drained by the preStop hook (/drain, native
        sidecars: the apps have exited): stop now."""
        if self._draining:
            log.info("already drained: stopping now")
        else:
            self.drain_inbound()
            log.info("termination drain: %s", plan.describe())
            await wait_for_drain(plan, lambda: self._book.active)
            log.info("termination drain over: %d connections still open are closed", self._book.active)
        await self.close(0, flush_timeout_s)

    async def close(self, drain_timeout_s: float = 5.0, flush_timeout_s: float = 2.0) -> None:
        """Stop accepting, let responses in progress finish (up to the timeout), flush spans."""
        self._draining = True
        for listener in self._listeners.values():
            listener.stop_accepting()
        self._listeners.clear()
        await self._book.drain(drain_timeout_s)
        self.pool.close_idle()
        self.h2_pool.close_idle()
        await self.admin.close()
        await asyncio.to_thread(self.log_files.close, flush_timeout_s)
        await self.exporters.close(flush_timeout_s)
        self.config = None
