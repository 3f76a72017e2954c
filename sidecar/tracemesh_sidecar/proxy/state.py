"""What connections read from the config in force: one DirectionContext per direction, swapped whole on apply.

A request takes the context current when it starts and keeps it to the end, so a reload
never changes a request midway (its tracer, timeouts and routes stay those it began with).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, Protocol

from tracemesh_sidecar.config.model import ProxyConfig
from tracemesh_sidecar.config.routes import OUTBOUND_ROUTE_TABLE, WeightedDestination
from tracemesh_sidecar.proxy.route_table import CompiledRouteTable
from tracemesh_sidecar.proxy.routing import (
    Destination,
    InboundRouter,
    OutboundRouter,
    inbound_cluster,
    is_own_address,
    outbound_route,
)
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.stats import Stats
from tracemesh_sidecar.telemetry.record import Record
from tracemesh_sidecar.telemetry.recorder import DirectionTelemetry
from tracemesh_sidecar.tracing import Hop, HopTracer, RequestFacts, ResponseFacts

if TYPE_CHECKING:  # carried here for the relay, never used by this module
    from tracemesh_sidecar.proxy.seams import StreamOpener

log = logging.getLogger("tracemesh.proxy")

ListenerKind = Literal["outbound", "inbound-capture", "inbound-port", "gateway"]
# "gateway": a router's listeners, routed by their route tables, traced as Envoy's gateway traces.
ContextKind = Literal["inbound", "outbound", "gateway"]


class DownstreamInfo:
    """What routing and telemetry read about the connection a request came on, whatever its HTTP version: learnt
    when it was accepted, the same for each of its requests.

    A class, built once per connection, not a Protocol its connection classes implement: compiled, its fields are
    loads, where a Protocol's are attribute lookups by name, each address a tuple built anew (callgrind: ~1.7k
    instructions a request)."""

    def __init__(self, listener: ListenerHandle, peer: tuple[str, int], local: tuple[str, int],
                 original: tuple[str, int] | None = None, service_port: int | None = None) -> None:
        self.peer = peer
        self.local = local
        self.original = original  # transparent outbound: where the client aimed
        self.service_port = service_port  # inbound: the port the caller aimed at
        self._listener = listener

    @property
    def route_table(self) -> str | None:
        """A gateway listener's route table."""
        return self._listener.route_table

    @property
    def inbound_local(self) -> tuple[str, int]:
        """Envoy's downstream local address at an inbound listener: the Service port the caller aimed at, where
        capture redirected it (the access logs' and the TCP metrics' `destination` address)."""
        return (self.local[0], self.service_port) if self.service_port is not None else self.local

    def is_own_address(self, host: str, port: int) -> bool:
        return is_own_address(self.local, host, port)


class ListenerHandle(Protocol):
    """A data-path listener as its connections see it (listeners.Listener), whichever protocol serves them."""

    @property
    def direction(self) -> Literal["inbound", "outbound"]: ...

    @property
    def route_table(self) -> str | None:
        """A gateway listener's route table."""

    def context(self) -> DirectionContext:
        """The config in force now."""

    def count(self, name: str) -> None: ...

    def connection_replaced(self, old: DownstreamSession, new: DownstreamSession) -> None: ...

    def connection_closed(self, conn: DownstreamSession) -> None: ...


class DownstreamSession(Protocol):
    """An accepted connection as the listener's book sees it, whichever protocol serves it now."""

    @property
    def listener(self) -> ListenerHandle: ...

    def discourage(self) -> None:
        """Draining: finish what is in progress, take no more (HTTP/1.1 `connection: close`, HTTP/2 GOAWAY)."""

    def drain(self) -> None:
        """Shutdown: close now if idle, else once what is in progress is done."""

    def abort(self) -> None: ...


class SpanSink(Protocol):
    """Where finished spans go (tracemesh_sidecar.export.ExporterSet)."""

    def submit(self, provider_name: str, span: Span) -> None: ...


class DirectionContext:
    """The config in force for one direction, and the plumbing every request of it shares."""

    def __init__(self, config: ProxyConfig, direction: ContextKind, stats: Stats,
                 http1_streams: StreamOpener, http2_streams: StreamOpener, spans: SpanSink,
                 telemetry: DirectionTelemetry) -> None:
        self.config = config
        self.direction = direction
        self.stats = stats
        self.http1_streams = http1_streams  # a relay's (relay.py) upstream streams of each version
        self.http2_streams = http2_streams
        self.spans = spans
        # Istio's standard metrics and access logs of this direction; None when neither is on (no per-request cost).
        self.telemetry: DirectionTelemetry | None = telemetry if telemetry.active else None
        # The metadata exchange's headers on every outbound request (a sidecar's and a gateway's).
        self.peer_headers = telemetry.exchange_headers if direction != "inbound" else ()
        # The same as HTTP/1.1 header lines, encoded once (the value is a few hundred bytes of base64).
        self.peer_lines = b"".join(line for _, line in telemetry.answer_lines) if direction != "inbound" else b""
        self.peer_answer = telemetry.answer_lines if direction == "inbound" else ()  # inbound: answers a peer's
        self.peer_answer_headers = telemetry.exchange_headers if direction == "inbound" else ()  # the same, HTTP/2
        # A gateway traces in Istio's CLIENT mode (telemetry.go workloadMode: ListenerClassGateway), with a
        # SERVER span for the downstream request and, spawned below it, Envoy's upstream CLIENT span
        # (spawn_upstream_span, which tracing.go sets for routers).
        gateway = direction == "gateway"
        self.tracer = HopTracer(config, "outbound" if direction == "outbound" else "inbound", stats,
                                policy=config.tracing.client if gateway else None)
        self.upstream_tracer = HopTracer(config, "outbound", stats) if gateway else None
        self.route_tables = {table.name: CompiledRouteTable(table) for table in config.route_tables}
        # A sidecar's mesh VirtualServices, consulted once the destination service is known.
        self.mesh_routes = self.route_tables.get(OUTBOUND_ROUTE_TABLE) if direction == "outbound" else None
        settings = config.inbound if direction == "inbound" else config.outbound
        self.connect_timeout_s = settings.connect_timeout_s
        self.request_timeout_s = settings.request_timeout_s
        self.protocol_detection_timeout_s = settings.protocol_detection_timeout_s
        self.inbound = InboundRouter(config)
        self.outbound = OutboundRouter(config)
        # Stat names built once, not per request; the count of every request held as its counter.
        self.rq_total = stats.counter(f"{direction}.downstream_rq_total")
        self._flag_stats: dict[str, str] = {}

    def flag_stat(self, flag: str) -> str:
        name = self._flag_stats.get(flag)
        if name is None:
            name = self._flag_stats[flag] = f"{self.direction}.response_flags.{flag}"
        return name

    # -- routing
    def route(self, authority: str, conn: DownstreamInfo) -> Destination | None:
        if self.direction == "inbound":
            port = conn.service_port
            return None if port is None else self.inbound.to_app(port)
        if conn.original is not None:
            return self.outbound.transparent(authority, conn.original)
        if not authority:
            return None
        destination = self.outbound.by_authority(authority)
        if destination is not None and conn.is_own_address(destination.host, destination.port):
            return None  # a request for the proxy itself would loop forever
        return destination

    def route_connect(self, authority: str, conn: DownstreamInfo) -> Destination | None:
        if self.direction == "inbound" or conn.original is not None:
            return None
        destination = self.outbound.by_authority(authority, default_port=443)
        if destination is not None and conn.is_own_address(destination.host, destination.port):
            return None
        return destination

    def upstream(self, destination: WeightedDestination) -> Destination | None:
        """The next endpoint of a route table's destination (its subset's, if it names one), or None: no such
        service or subset (`has_upstream` False: Envoy's 503 NC), or no endpoints (503 UH)."""
        route = self.outbound.weighted(destination)[0]
        return None if route is None else route.destination()

    def has_upstream(self, destination: WeightedDestination) -> bool:
        return self.outbound.weighted(destination)[0] is not None

    def cluster_of(self, destination: WeightedDestination) -> str:
        return self.outbound.weighted(destination)[1]

    def unrouted(self, authority: str) -> tuple[str, str]:
        """(operation, cluster) naming the span of a request that found no route."""
        if self.direction == "inbound":
            return f"{self.config.node.own_host}:0/*", inbound_cluster(0)
        return outbound_route(self.outbound.normalize(authority)[0] if authority else "unknown", 0)

    # -- tracing: a fault in the tracing core must never fail a request
    def start_hop(self, facts: RequestFacts, start_us: int, upstream: bool = False) -> Hop | None:
        """`upstream`: a gateway's upstream CLIENT span, below its SERVER span."""
        tracer = self.upstream_tracer if upstream else self.tracer
        if tracer is None:
            return None
        try:
            return tracer.start(facts, start_us)
        except Exception:
            self.stats.inc("tracing.errors")
            log.exception("tracing failed to start a span; the request goes on untraced")
            return None

    def record_safely(self, record: Callable[[Record], None], facts: Record) -> None:
        """Metrics and access logs: a fault there must never fail a request either."""
        try:
            record(facts)
        except Exception:
            self.stats.inc("telemetry.errors")
            log.exception("recording metrics and access logs failed")

    def finish_hop(self, hop: Hop, facts: ResponseFacts, end_us: int) -> None:
        try:
            span = hop.finish(facts, end_us)
        except Exception:
            self.stats.inc("tracing.errors")
            log.exception("tracing failed to finish a span; it is not reported")
            return
        if span is not None and hop.provider is not None:
            self.spans.submit(hop.provider, span)
