"""The version-free half of one request/response: route, trace hop, local-reply decisions, telemetry record.

Envoy separates the codec (HTTP/1, HTTP/2) from the connection manager and the router; so does the
proxy. A codec (proxy/exchange.py for HTTP/1.x, proxy/http2/ for HTTP/2) parses and frames messages
and asks this module what to do with a request head: `plan_request` routes it (a sidecar's
destination, a mesh VirtualService's or a gateway's route table), opens its trace hop(s), and says
which headers the forwarded request sets and drops, its timeout, or the local reply owed (404 NR, 503
NC/UH). When the response is over, `finish_stream` closes the hops and records Istio's metrics and
access log. Nothing here reads or writes a socket or knows an HTTP version's framing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from time import time_ns
from typing import Any, Final, NamedTuple

from tracemesh_sidecar.config.routes import Route, WeightedDestination
from tracemesh_sidecar.native_dataclasses import rebuilt_from_fields
from tracemesh_sidecar.proxy.edge import edge_headers, edge_removals
from tracemesh_sidecar.proxy.route_table import CompiledRouteTable, first_route, pick_destination, rewrite_path
from tracemesh_sidecar.proxy.routing import Destination, cluster_service
from tracemesh_sidecar.proxy.state import DirectionContext, DownstreamInfo
from tracemesh_sidecar.telemetry.peer import PEER_METADATA, UNKNOWN_PEER, Peer, decode_peer
from tracemesh_sidecar.telemetry.record import Record
from tracemesh_sidecar.tracing import Hop
from tracemesh_sidecar.tracing.facts import RequestFacts, ResponseFacts
from tracemesh_sidecar.tracing.hop import DECORATOR_OPERATION

# Request bytes kept so that a request that met a connection closed by its peer (or a stream it never processed)
# can be sent again; a request larger than this is not retried.
RETRY_BUFFER_LIMIT: Final = 64 * 1024

UF_BODY: Final = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
UC_BODY: Final = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
UR_BODY: Final = "upstream connect error or disconnect/reset before headers. reset reason: remote reset"
UH_BODY: Final = "no healthy upstream"
UT_BODY: Final = "upstream request timeout"
UPE_BODY: Final = "upstream protocol error"
NR_BODY: Final = ""  # Envoy's 404 for a request no route matches has no body
NC_BODY: Final = "no cluster"
HEADERS_TOO_LARGE_BODY: Final = "request header fields too large"


def now_us() -> int:
    # time_ns bound at import: compiled, `time.time_ns` is a module attribute lookup per call (~270 instructions,
    # twice a request).
    return time_ns() // 1000


class LocalReply(NamedTuple):
    """What the proxy answers itself: status, Envoy's response flag, body."""

    status: int
    flag: str
    body: str


# RequestHead, StreamPlan and StreamOutcome are built once per request: each writes its `__init__` out, which mypyc
# compiles (the one @dataclass generates stays interpreted Python), and rebuilds from its fields for copy and
# pickle (native_dataclasses.py says why).
@dataclass(slots=True)
class RequestHead:
    """A request as every HTTP version sees it."""

    method: str
    target: str  # the request-target as received (an explicit-proxy client's absolute URL stays one)
    path: str  # its origin-form: what routes match
    authority: str
    protocol: str  # "HTTP/1.1", "HTTP/1.0", "HTTP/2"
    fields: dict[str, str]  # lowercase names, repeated ones joined with ", "

    def __init__(self, method: str, target: str, path: str, authority: str, protocol: str,
                 fields: dict[str, str]) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.authority = authority
        self.protocol = protocol
        self.fields = fields

    def __reduce__(self) -> tuple[type[Any], tuple[object, ...]]:
        return rebuilt_from_fields(self)


@dataclass(slots=True)
class StreamPlan:
    """Where a request goes and how it is forwarded, or the local reply it gets instead."""

    destination: Destination | None = None
    route: Route | None = None  # set when a route table routed it: its timeout and retries apply
    weighted: WeightedDestination | None = None
    hop: Hop | None = None
    upstream_hop: Hop | None = None  # a gateway's upstream CLIENT span (Envoy's spawn_upstream_span)
    path: str = "/"  # as forwarded: a route's rewrite applied
    set_headers: Sequence[tuple[str, str]] = ()  # replace same-named headers
    remove_headers: frozenset[str] = frozenset()
    reply: LocalReply | None = None
    timeout_s: float | None = None  # the route's (all tries together) or the listener's

    def __init__(self, destination: Destination | None = None, route: Route | None = None,
                 weighted: WeightedDestination | None = None, hop: Hop | None = None, upstream_hop: Hop | None = None,
                 path: str = "/", set_headers: Sequence[tuple[str, str]] = (),
                 remove_headers: frozenset[str] = frozenset(), reply: LocalReply | None = None,
                 timeout_s: float | None = None) -> None:
        self.destination = destination
        self.route = route
        self.weighted = weighted
        self.hop = hop
        self.upstream_hop = upstream_hop
        self.path = path
        self.set_headers = set_headers
        self.remove_headers = remove_headers
        self.reply = reply
        self.timeout_s = timeout_s

    def __reduce__(self) -> tuple[type[Any], tuple[object, ...]]:
        return rebuilt_from_fields(self)

    def upstream_address(self) -> tuple[str, int] | None:
        destination = self.destination
        return (destination.host, destination.port) if destination is not None else None


def plan_request(ctx: DirectionContext, info: DownstreamInfo, head: RequestHead, start_us: int) -> StreamPlan:
    """Route `head` as the listener's direction routes, and open its span(s)."""
    if ctx.direction == "gateway":
        return _plan_gateway(ctx, info, head, start_us)
    destination = ctx.route(head.authority, info)
    plan = StreamPlan(destination=destination, path=head.path or "/", timeout_s=ctx.request_timeout_s)
    if ctx.mesh_routes is not None and destination is not None and destination.decorated:
        service = cluster_service(destination.cluster)
        if ctx.mesh_routes.virtual_host(service) is not None:
            route, cluster = _route(ctx, plan, ctx.mesh_routes, service, head)
            operation = (route.decorator if route is not None else None) or destination.operation
            plan.hop = ctx.start_hop(_facts(head, info, operation, cluster, decorated=True), start_us)
            _hop_headers(plan, plan.hop)
            _routed(ctx, plan, route)
            return plan
    operation, cluster = (destination.operation, destination.cluster) if destination else ctx.unrouted(head.authority)
    plan.hop = ctx.start_hop(_facts(head, info, operation, cluster, destination is not None and destination.decorated),
                             start_us)
    _hop_headers(plan, plan.hop)
    if destination is None:
        plan.reply = LocalReply(503, "UH", UH_BODY)
    return plan


def _plan_gateway(ctx: DirectionContext, info: DownstreamInfo, head: RequestHead, start_us: int) -> StreamPlan:
    """A gateway's request: route by its listener's table, trace as Envoy's gateway does (a SERVER span named
    after the route's decorator, a CLIENT span for the upstream leg), forward with edge headers."""
    fields = head.fields
    edge = edge_headers(info.peer[0], fields)
    fields.pop(DECORATOR_OPERATION, None)  # Envoy's gateway names its span after its route, never a client's header
    fields.update(edge)  # the tracer reads the request as forwarded (an edge request's fresh x-request-id)
    plan = StreamPlan(path=head.path or "/", timeout_s=ctx.request_timeout_s)
    route, cluster = _route(ctx, plan, ctx.route_tables.get(info.route_table or ""), head.authority, head)
    decorator = route.decorator if route is not None else None
    destination = plan.destination
    operation = decorator or (destination.operation if destination else f"{head.authority}{plan.path}")
    hop = plan.hop = ctx.start_hop(_facts(head, info, operation, cluster, decorated=False), start_us)
    if not _routed(ctx, plan, route):
        return plan
    extra = list(edge)
    remove = edge_removals(info.peer[0])
    if hop is not None:
        extra += hop.headers_to_set
        remove = remove.union(hop.headers_to_remove)
    # Envoy's router names its upstream span `router <cluster's stat name> egress`; Istio's stat names end in ";"
    # (util.DelimitedStatsPrefix).
    forwarded = RequestHead(head.method, head.target, head.path, head.authority, head.protocol,
                            _as_forwarded(fields, hop))
    upstream_hop = plan.upstream_hop = ctx.start_hop(
        _facts(forwarded, info, f"router {cluster}; egress", cluster, decorated=False), now_us(), upstream=True)
    if upstream_hop is not None:
        extra += upstream_hop.headers_to_set
        remove = remove.union(upstream_hop.headers_to_remove)
    if decorator:  # Envoy's egress connection manager passes its route's decorator to the next hop
        extra.append((DECORATOR_OPERATION, decorator))
    plan.set_headers = list(dict(extra).items())  # one value per name, the last one set
    plan.remove_headers = remove
    return plan


def _route(ctx: DirectionContext, plan: StreamPlan, table: CompiledRouteTable | None, authority: str,
           head: RequestHead) -> tuple[Route | None, str]:
    """The route table's route for `head` (kept on the plan with its picked destination), and the cluster."""
    virtual_host = table.virtual_host(authority) if table is not None else None
    route = None if virtual_host is None else first_route(virtual_host, head.method, plan.path, head.fields)
    if route is None:
        return None, ctx.unrouted(authority)[1]
    plan.route = route
    weighted = plan.weighted = pick_destination(route)
    plan.destination = ctx.upstream(weighted)
    if route.timeout_s:
        plan.timeout_s = route.timeout_s
    return route, ctx.cluster_of(weighted)


def _routed(ctx: DirectionContext, plan: StreamPlan, route: Route | None) -> bool:
    """True when the route has a destination (its path rewrite applied); else the plan's local reply says
    why not: no route (404 NR), no such cluster (503 NC) or no endpoint (503 UH)."""
    if route is None:
        plan.reply = LocalReply(404, "NR", NR_BODY)
        return False
    if plan.destination is None:
        weighted = plan.weighted
        missing = weighted is not None and not ctx.has_upstream(weighted)
        plan.reply = LocalReply(503, "NC", NC_BODY) if missing else LocalReply(503, "UH", UH_BODY)
        return False
    plan.path = rewrite_path(route, plan.path)
    return True


def _hop_headers(plan: StreamPlan, hop: Hop | None) -> None:
    if hop is not None:
        plan.set_headers = hop.headers_to_set
        plan.remove_headers = hop.headers_to_remove


def _facts(head: RequestHead, info: DownstreamInfo, operation: str, cluster: str, decorated: bool) -> RequestFacts:
    return RequestFacts(method=head.method, target=head.target, authority=head.authority, protocol=head.protocol,
                        headers=head.fields, peer=info.peer, operation=operation, cluster=cluster,
                        decorated=decorated)


def _as_forwarded(fields: dict[str, str], hop: Hop | None) -> dict[str, str]:
    """The request's headers as the hop forwards them: what the span below it reads its parent from."""
    if hop is None:
        return fields
    forwarded = {name: value for name, value in fields.items() if name not in hop.headers_to_remove}
    forwarded.update(hop.headers_to_set)
    return forwarded


@dataclass(slots=True)
class StreamOutcome:
    """How a request ended, for its spans, metrics and access log."""

    status: int  # what the downstream received; 0: nothing
    flag: str  # "-" or Envoy's response flags, comma-joined
    request_size: int
    response_size: int
    end_us: int
    response_headers: Mapping[str, str] | None = None  # lowercase names (only read with telemetry on)
    grpc_status: str | None = None
    grpc_message: str | None = None
    upstream_local: tuple[str, int] | None = None
    upstream_peer: Peer = UNKNOWN_PEER

    def __init__(self, status: int, flag: str, request_size: int, response_size: int, end_us: int,
                 response_headers: Mapping[str, str] | None = None, grpc_status: str | None = None,
                 grpc_message: str | None = None, upstream_local: tuple[str, int] | None = None,
                 upstream_peer: Peer = UNKNOWN_PEER) -> None:
        self.status = status
        self.flag = flag
        self.request_size = request_size
        self.response_size = response_size
        self.end_us = end_us
        self.response_headers = response_headers
        self.grpc_status = grpc_status
        self.grpc_message = grpc_message
        self.upstream_local = upstream_local
        self.upstream_peer = upstream_peer

    def __reduce__(self) -> tuple[type[Any], tuple[object, ...]]:
        return rebuilt_from_fields(self)


def finish_stream(ctx: DirectionContext, info: DownstreamInfo, head: RequestHead, plan: StreamPlan, start_us: int,
                  outcome: StreamOutcome) -> None:
    """Close the request's spans and record its metrics and access log line."""
    flag = outcome.flag
    if flag != "-":
        ctx.stats.inc(ctx.flag_stat(flag))
    hop, upstream_hop = plan.hop, plan.upstream_hop
    if hop is not None or upstream_hop is not None:
        facts = ResponseFacts(status=outcome.status, request_size=outcome.request_size,
                              response_size=outcome.response_size, response_flags=flag,
                              upstream=plan.upstream_address(), grpc_status=outcome.grpc_status,
                              grpc_message=outcome.grpc_message)
        if upstream_hop is not None:
            ctx.finish_hop(upstream_hop, facts, outcome.end_us)
        if hop is not None:
            ctx.finish_hop(hop, facts, outcome.end_us)
    telemetry = ctx.telemetry
    if telemetry is not None:
        ctx.record_safely(telemetry.record, stream_record(ctx, info, head, plan, start_us, outcome))


def stream_record(ctx: DirectionContext, info: DownstreamInfo, head: RequestHead, plan: StreamPlan, start_us: int,
                  outcome: StreamOutcome) -> Record:
    """What metrics and access logs read about a request, once it is over."""
    fields = head.fields
    hop = plan.hop
    telemetry = ctx.telemetry
    # The request as forwarded (a fresh x-request-id), as Envoy logs it, where a log or an expression reads it (the
    # headers a hop sets are none of those the standard labels read).
    if hop is not None and hop.headers_to_set and telemetry is not None and telemetry.reads_headers:
        fields = dict(fields)
        for name, value in hop.headers_to_set:  # not update(): from a list of pairs, a generic call (~1k instructions)
            fields[name] = value
    destination = plan.destination
    route = plan.route
    inbound = ctx.direction == "inbound"
    local = info.inbound_local if inbound else (info.original or info.local)
    return Record(
        tcp=False, method=head.method, path=head.target, authority=head.authority, protocol=head.protocol,
        request_headers=fields, response_headers=outcome.response_headers or {}, status=outcome.status,
        flags=outcome.flag, bytes_received=outcome.request_size, bytes_sent=outcome.response_size,
        start_us=start_us, end_us=outcome.end_us, upstream_host=plan.upstream_address(),
        upstream_local=outcome.upstream_local,
        cluster=ctx.cluster_of(plan.weighted) if plan.weighted is not None else
        (destination.cluster if destination else None),
        service_host=destination.operation.rpartition(":")[0] if destination and destination.decorated else None,
        downstream_local=local, downstream_remote=info.peer,
        route_name=route.name if route is not None else ("default" if destination and destination.decorated
                                                         else "allow_any" if destination else None),
        peer=decode_peer(fields.get(PEER_METADATA)) if inbound else outcome.upstream_peer,
    )
