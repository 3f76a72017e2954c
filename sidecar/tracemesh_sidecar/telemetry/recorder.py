"""One direction's metrics and access logs under the config in force: built once per config push.

Everything that does not change per request is precomputed here: this proxy's own half of the label
tuple, the label schema of each metric after Telemetry's overrides (disabled metrics, removed tags, tags
set by expressions), the compiled log formats and filters. Per request, `record(record)` builds one label
tuple (the peer's half cached per peer) and touches one series per enabled metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tracemesh_sidecar.config.model import ProxyConfig
from tracemesh_sidecar.config.observability import AccessLogSink, MetricsPolicy
from tracemesh_sidecar.telemetry.expressions import Expression, filter_matches, parse_expression, tag_value
from tracemesh_sidecar.telemetry.logformat import JsonFormat, TextFormat
from tracemesh_sidecar.telemetry.metrics import (
    ALL_SPECS,
    REQUEST_COUNT,
    REQUEST_DURATION,
    REQUEST_SIZE,
    STANDARD_LABELS,
    TCP_CLOSED,
    TCP_LABELS,
    TCP_OPENED,
    TCP_RECEIVED,
    TCP_SENT,
    MetricSpec,
    MetricStore,
    Series,
)
from tracemesh_sidecar.telemetry.peer import UNKNOWN, Peer, exchange_headers, own_peer
from tracemesh_sidecar.telemetry.record import Record
from tracemesh_sidecar.telemetry.sink import LogFile, LogFiles

# Entries kept by each of DirectionTelemetry's caches (a peer's labels, a label set's series); past it, a cache
# starts again.
_CACHE_LIMIT: Final = 1024
# What an HTTP request's standard labels are made of, beyond this proxy's own: its peer (by id), service host,
# authority (a passthrough's; "" otherwise), gRPC or not, status, grpc-status and response flags.
_SeriesKey = tuple[int, str | None, str, bool, int, str, str]


@dataclass(frozen=True, slots=True)
class _Schema:
    """One metric's labels after the overrides: which standard labels it keeps, and the tags it sets."""

    spec: MetricSpec
    names: tuple[str, ...]
    kept: tuple[int, ...] | None  # indexes into the standard tuple; None: all of them, unchanged
    added: tuple[tuple[str, Expression], ...]


def _peer_half(peer: Peer) -> tuple[str, ...]:
    return (peer.workload, peer.namespace, peer.principal, peer.app, peer.version)


def _canonical_half(peer: Peer) -> tuple[str, ...]:
    return (peer.canonical_service, peer.canonical_revision, peer.cluster)


class DirectionTelemetry:
    """`direction`: "inbound" reports as the destination (server), "outbound" and a gateway as the source."""

    def __init__(self, config: ProxyConfig, direction: str, store: MetricStore, files: LogFiles) -> None:
        server = direction == "inbound"
        self.server = server
        self._store = store
        policy = config.metrics.server if server else config.metrics.client
        self._own = own_peer(config.node)
        self._reporter = "destination" if server else "source"
        self._security = "none" if server else UNKNOWN  # Istio: no mTLS -> "none" at the server
        self._http = [schema for schema in _schemas(policy, tcp=False) if schema is not None]
        # Each request's series, in the order of _http, by the few request values the standard labels are made of
        # (_SeriesKey): a request finds its four series with one lookup of a 7-tuple, without building its 25 labels
        # (callgrind: ~8k instructions a request less than building them and looking the series up by them). Only
        # where no metric adds a tag computed from the request: there those values do not say the series.
        self._plain = not any(schema.added for schema in self._http)
        self._series: dict[_SeriesKey, tuple[Peer, list[tuple[MetricSpec, Series]]]] = {}
        self._tcp = {schema.spec.name: schema for schema in _schemas(policy, tcp=True) if schema is not None}
        self._disabled = tuple(spec for spec in ALL_SPECS
                               if spec not in (schema.spec for schema in self._http)
                               and spec.name not in self._tcp)
        # Each peer's label halves, keyed by the Peer object's identity (a peer is one cached object per metadata
        # value: telemetry/peer.py), since hashing a frozen dataclass runs its generated __hash__, interpreted
        # Python, on every request. The entry keeps its peer, so the id is not reused while it is cached.
        self._peer_cache: dict[int, tuple[Peer, tuple[str, ...]]] = {}
        sinks = config.access_logs.server if server else config.access_logs.client
        self._logs = [_CompiledSink(sink, files.get(sink.path)) for sink in sinks]
        # The metadata exchange: outbound requests (a sidecar's and a gateway's) carry this proxy's metadata.
        self.exchange_headers = exchange_headers(config.node, config.proxy_type)
        # The response answers each header the caller's sidecar sent with ours (istio/proxy's peer_metadata filter,
        # MXPropagationMethod::inject downstream): (name, response header line).
        self.answer_lines = tuple((name, b"%s: %s\r\n" % (name.encode(), value.encode()))
                                  for name, value in self.exchange_headers)

    def retire_disabled(self) -> None:
        """Once this config is in force: the metrics it disables stop being exposed for its reporter."""
        for spec in self._disabled:
            self._store.forget(spec, self._reporter)

    @property
    def reads_headers(self) -> bool:
        """Whether anything here reads headers beyond the few the standard labels read (the request's content-type
        and peer metadata, the response's grpc-status): an access log (%REQ(...)%, %RESP(...)%, filters) or a tag
        set by an expression. Where nothing does, a request need not copy its forwarded headers nor build the
        response's header dict (~6k instructions a request)."""
        return bool(self._logs) or not self._plain

    @property
    def active(self) -> bool:
        """Anything to record for a request of this direction."""
        return bool(self._http or self._tcp or self._logs)

    def _labels(self, record: Record, tcp: bool) -> tuple[str, ...]:
        peer = record.peer
        cached = self._peer_cache.get(id(peer))
        if cached is not None and cached[0] is peer:
            halves = cached[1]
        else:
            if len(self._peer_cache) >= _CACHE_LIMIT:
                self._peer_cache.clear()
            source, destination = (peer, self._own) if self.server else (self._own, peer)
            halves = (self._reporter, *_peer_half(source), *_canonical_half(source), *_peer_half(destination))
            self._peer_cache[id(peer)] = (peer, halves)
            # destination canonical labels are appended after the service's three, below
        destination = self._own if self.server else peer
        service = record.service_host
        if service:
            name, _, rest = service.partition(".")
            namespace = rest.partition(".")[0] or UNKNOWN
        else:
            service, name, namespace = record.authority or UNKNOWN, "PassthroughCluster", UNKNOWN
        protocol = "tcp" if tcp else ("grpc" if record.grpc else "http")
        if tcp:
            tail: tuple[str, ...] = (protocol, record.flags, self._security)
        else:
            tail = (protocol, str(record.status), record.response_headers.get("grpc-status", ""), record.flags,
                    self._security)
        return (*halves, service, name, namespace, *_canonical_half(destination), *tail)

    def record(self, record: Record) -> None:
        """A finished HTTP request: its metrics and access-log lines."""
        if self._http:
            for spec, each in self._http_series(record):
                if spec is REQUEST_COUNT:
                    each.record(1)
                elif spec is REQUEST_DURATION:
                    each.record((record.end_us - record.start_us) / 1000)
                elif spec is REQUEST_SIZE:
                    each.record(record.bytes_received)
                else:
                    each.record(record.bytes_sent)
        self._log(record)

    def _http_series(self, record: Record) -> list[tuple[MetricSpec, Series]]:
        """The series a finished HTTP request records into, one per enabled metric, in the order of _http."""
        if not self._plain:
            return self._labelled_series(record)
        peer = record.peer
        # Everything _labels reads that varies by request (the rest is this proxy's, fixed for the config). The
        # peer by identity, as in _labels; the entry keeps it, so its id is not reused while the entry is cached.
        # The authority only where no Service names the destination (a passthrough, labelled by it): a client's
        # Host header must not spread one service's requests over entries.
        service_host = record.service_host
        key = (id(peer), service_host, record.authority if service_host is None else "", record.grpc, record.status,
               record.response_headers.get("grpc-status", ""), record.flags)
        cached = self._series.get(key)
        if cached is not None and cached[0] is peer:
            return cached[1]
        series = self._labelled_series(record)
        if len(self._series) >= _CACHE_LIMIT:
            self._series.clear()
        self._series[key] = (peer, series)
        return series

    def _labelled_series(self, record: Record) -> list[tuple[MetricSpec, Series]]:
        standard = self._labels(record, tcp=False)
        return [(schema.spec, self._store.series(schema.spec, _key(schema, standard, record))) for schema in self._http]

    def tcp_opened(self, record: Record) -> None:
        schema = self._tcp.get(TCP_OPENED.name)
        if schema is not None:
            self._store.add(TCP_OPENED, _key(schema, self._labels(record, tcp=True), record), 1)

    def tcp_closed(self, record: Record) -> None:
        """An opaque TCP connection ended: its byte counts and the closed count, and its access-log lines."""
        if self._tcp:
            standard = self._labels(record, tcp=True)
            for spec, amount in ((TCP_CLOSED, 1), (TCP_SENT, record.bytes_sent),
                                 (TCP_RECEIVED, record.bytes_received)):
                schema = self._tcp.get(spec.name)
                if schema is not None:
                    self._store.add(spec, _key(schema, standard, record), amount)
        self._log(record)

    def _log(self, record: Record) -> None:
        for sink in self._logs:
            if sink.filter is None or filter_matches(sink.filter, record):
                sink.file.write(sink.format.line(record))


class _CompiledSink:
    __slots__ = ("file", "filter", "format")

    def __init__(self, sink: AccessLogSink, file: LogFile) -> None:
        self.file = file
        self.format: TextFormat | JsonFormat = JsonFormat(sink.labels) if sink.encoding == "JSON" \
            else TextFormat(sink.format)
        self.filter = parse_expression(sink.filter) if sink.filter is not None else None


def _key(schema: _Schema, standard: tuple[str, ...], record: Record) -> tuple[tuple[str, ...], tuple[str, ...]]:
    kept = schema.kept
    if kept is None and not schema.added:
        return schema.names, standard
    values = standard if kept is None else tuple(standard[index] for index in kept)
    if schema.added:
        values = (*values, *(tag_value(expression, record) for _, expression in schema.added))
    return schema.names, values


def _schemas(policy: MetricsPolicy, tcp: bool) -> list[_Schema | None]:
    """Each metric's schema after `policy` (Telemetry applies overrides in order; ALL_METRICS matches every
    metric); None for a disabled one. A tag set to an expression replaces a standard label of that name."""
    schemas: list[_Schema | None] = []
    base = TCP_LABELS if tcp else STANDARD_LABELS
    for spec in ALL_SPECS:
        if spec.tcp != tcp:
            continue
        enabled = policy.enabled
        removed: set[str] = set()
        added: dict[str, str] = {}
        for override in policy.overrides:
            if override.metric not in ("ALL_METRICS", spec.selector):
                continue
            if override.disabled is not None:
                enabled = not override.disabled
            for tag in override.tag_remove:
                removed.add(tag)
                added.pop(tag, None)
            for tag, expression in override.tag_set:
                removed.discard(tag)
                added[tag] = expression
        if not enabled:
            schemas.append(None)
            continue
        kept = tuple(index for index, name in enumerate(base) if name not in removed and name not in added)
        names = tuple(base[index] for index in kept) + tuple(added)
        unchanged = len(kept) == len(base) and not added
        schemas.append(_Schema(spec, names, None if unchanged else kept,
                               tuple((tag, parse_expression(text)) for tag, text in added.items())))
    return schemas
