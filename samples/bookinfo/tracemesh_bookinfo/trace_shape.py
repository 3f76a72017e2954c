"""Is this one complete Bookinfo trace, shaped as the mesh contract says? (Pure: spans in, problems out.)

Shared by `tracemesh demo --once` and every end-to-end test (local, netns, kind), so "complete"
means the same everywhere: one root SERVER span (productpage, or the ingress gateway in front
of it), and for every RPC on the Bookinfo call graph exactly one CLIENT span in the caller and
one SERVER span in the callee, joined parent to child, the SERVER inside the CLIENT in time,
named and tagged as the contract says.

Through the ingress gateway the trace is Istio's (tests/integration/telemetry/tracing/tracing.go
WantOtelIngressTraceRoot): the gateway's root SERVER span named after its route's decorator
(`productpage.default.svc.cluster.local:9080/productpage`), below it the upstream CLIENT span Envoy's
router spawns (`router outbound|9080||productpage.default.svc.cluster.local; egress`), below that
productpage's SERVER span, named after the same decorator (the gateway passes it on); 7 spans when
reviews v1 answers, 9 for v2 and v3. A DestinationRule subset shows in the clusters
(`outbound|9080|v1|reviews...`), which are accepted with or without one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tracemesh_sidecar.spans.model import Span

GATEWAY = "istio-ingressgateway"
GATEWAY_NAMESPACE = "istio-system"
# The gateway's service name: Istio's ingress gateway, or a Gateway API Gateway's `<name>-istio.<namespace>`.
INGRESS_GATEWAY = f"{GATEWAY}.{GATEWAY_NAMESPACE}"
SERVICE_PORT = 9080
REVIEWS_VERSIONS = ("v1", "v2", "v3")
# Tags every proxy span carries (mesh contract, "Spans"); values checked separately below.
REQUIRED_TAGS = (
    "http.method", "http.url", "http.protocol", "http.status_code", "request_size", "response_size",
    "response_flags", "upstream_cluster", "guid:x-request-id", "node_id", "user_agent", "peer.address",
    "component", "istio.canonical_service", "istio.canonical_revision", "istio.namespace", "istio.mesh_id",
)


@dataclass(frozen=True, slots=True)
class Rpc:
    """One call on the Bookinfo graph: `caller` and `callee` are canonical services."""

    caller: str
    callee: str


@dataclass(frozen=True, slots=True)
class BookinfoTrace:
    trace_id: str | None
    reviews_version: str | None  # the canonical revision of the reviews workload that answered
    problems: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.problems


ENTRY_PATH = "/productpage"


def expected_rpcs(reviews_version: str) -> tuple[Rpc, ...]:
    """The RPCs between sidecars (the gateway's hop is checked on its own: its spans are named differently)."""
    rpcs = [Rpc("productpage", "details"), Rpc("productpage", "reviews")]
    if reviews_version != "v1":
        rpcs.append(Rpc("reviews", "ratings"))
    return tuple(rpcs)


def gateway_operation(namespace: str = "default", path: str = ENTRY_PATH) -> str:
    """The decorator Istio gives the Bookinfo gateway's route (route.go getRouteOperation): host:port + path."""
    return f"{service_host('productpage', namespace)}:{SERVICE_PORT}{path}"


def outbound_cluster_pattern(host: str) -> re.Pattern[str]:
    """`outbound|9080||host`, or with a DestinationRule subset `outbound|9080|v1|host`."""
    return re.compile(rf"outbound\|{SERVICE_PORT}\|[A-Za-z0-9-]*\|{re.escape(host)}")


def check_bookinfo_trace(spans: Sequence[Span], namespace: str = "default", *,
                         ingress_gateway: bool = False, gateway_service: str = INGRESS_GATEWAY) -> list[str]:
    """The problems with one trace of `GET /productpage`; empty when it is complete."""
    return list(inspect_bookinfo_trace(spans, namespace, ingress_gateway=ingress_gateway,
                                       gateway_service=gateway_service).problems)


def inspect_bookinfo_trace(spans: Sequence[Span], namespace: str = "default", *,
                           ingress_gateway: bool = False, gateway_service: str = INGRESS_GATEWAY) -> BookinfoTrace:
    """`check_bookinfo_trace`, also saying which trace and which reviews version answered. `gateway_service`:
    the service name of the gateway's spans (`<canonical name>.<namespace>`)."""
    if not spans:
        return BookinfoTrace(None, None, ("the trace has no spans",))
    checker = _Checker(spans, namespace, gateway_service)
    version = checker.reviews_version()
    checker.check_ids()
    root_service = GATEWAY if ingress_gateway else "productpage"
    root = checker.check_root(root_service)
    if version is not None:
        rpcs = expected_rpcs(version)
        checker.check_count(2 * len(rpcs) + 1 + (2 if ingress_gateway else 0), version)
        servers = {"productpage": checker.check_gateway_hop(root) if ingress_gateway else root}
        for rpc in rpcs:
            servers[rpc.callee] = checker.check_rpc(rpc, servers.get(rpc.caller))
        checker.check_leftovers()
    checker.check_request_id()
    return BookinfoTrace(spans[0].trace_id, version, tuple(checker.problems))


def service_host(service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc.cluster.local"


def span_label(span: Span) -> str:
    return f"{span.kind} {span.local_endpoint.service_name} {span.name!r} id={span.id}"


class _Checker:
    """Collects the problems of one trace; each check adds what it finds and marks the spans it matched."""

    def __init__(self, spans: Sequence[Span], namespace: str, gateway_service: str = INGRESS_GATEWAY) -> None:
        self.spans = spans
        self.namespace = namespace
        self.gateway_name, _, self.gateway_namespace = gateway_service.rpartition(".")
        self.problems: list[str] = []
        self.matched: set[int] = set()  # indexes of spans accounted for

    def _namespace_of(self, service: str) -> str:
        return self.gateway_namespace if service == GATEWAY else self.namespace

    def _canonical(self, service: str) -> str:
        return self.gateway_name if service == GATEWAY else service

    def _service_name(self, service: str) -> str:
        return f"{self._canonical(service)}.{self._namespace_of(service)}"

    def reviews_version(self) -> str | None:
        answered = {span.tags.get("istio.canonical_revision") for span in self.spans
                    if span.kind == "SERVER" and span.local_endpoint.service_name == self._service_name("reviews")}
        versions = sorted(str(version) for version in answered)
        if len(versions) == 1 and versions[0] in REVIEWS_VERSIONS:
            return versions[0]
        if not versions:
            self.problems.append("no SERVER span of reviews: cannot tell which reviews version answered")
        else:
            self.problems.append(f"reviews SERVER spans carry istio.canonical_revision {versions}; "
                                 f"expected exactly one of {', '.join(REVIEWS_VERSIONS)}")
        return None

    def check_ids(self) -> None:
        trace_ids = sorted({span.trace_id for span in self.spans})
        if len(trace_ids) > 1:
            self.problems.append(f"spans carry {len(trace_ids)} different trace ids: {', '.join(trace_ids)}")
        ids = [span.id for span in self.spans]
        for span_id in sorted({span_id for span_id in ids if ids.count(span_id) > 1}):
            self.problems.append(f"span id {span_id} is used by {ids.count(span_id)} spans")

    def check_root(self, service: str) -> Span | None:
        roots = [index for index, span in enumerate(self.spans) if not span.parent_id]
        if len(roots) != 1:
            labels = "; ".join(span_label(self.spans[index]) for index in roots) or "none"
            self.problems.append(f"expected exactly one root span (no parentId), found {len(roots)}: {labels}")
            return None
        root = self.spans[roots[0]]
        if root.kind != "SERVER" or root.local_endpoint.service_name != self._service_name(service):
            self.problems.append(f"the root span should be the SERVER span of {self._service_name(service)}, "
                                 f"got {span_label(root)}")
            return None
        self.matched.add(roots[0])
        if service == GATEWAY:
            self._check_span(root, service, gateway_operation(self.namespace), None)
            self._check_cluster(root, service_host("productpage", self.namespace))
        else:
            self._check_span(root, service, f"{service_host(service, self.namespace)}:{SERVICE_PORT}/*",
                             f"inbound|{SERVICE_PORT}||")
        return root

    def check_count(self, expected: int, version: str) -> None:
        if len(self.spans) != expected:
            self.problems.append(f"expected {expected} spans (reviews {version} answered), got {len(self.spans)}")

    def _find(self, kind: str, service: str, name: str) -> Span | None:
        return self._find_one(kind, service, lambda candidate: candidate == name, repr(name))

    def _find_one(self, kind: str, service: str, named: Callable[[str], bool], described: str) -> Span | None:
        found = [index for index, span in enumerate(self.spans)
                 if span.kind == kind and span.local_endpoint.service_name == self._service_name(service)
                 and named(span.name)]
        if len(found) != 1:
            self.problems.append(f"expected one {kind} span of {self._service_name(service)} named {described}, "
                                 f"found {len(found)}")
            return None
        self.matched.add(found[0])
        return self.spans[found[0]]

    def check_gateway_hop(self, root: Span | None) -> Span | None:
        """The gateway's upstream CLIENT span below its root, and productpage's SERVER span below that;
        returns the latter."""
        host = service_host("productpage", self.namespace)
        upstream = self._find_one(
            "CLIENT", GATEWAY, lambda name: name.startswith("router outbound|") and name.endswith(f"|{host}; egress"),
            f"'router outbound|{SERVICE_PORT}||{host}; egress'")
        operation = gateway_operation(self.namespace)
        server = self._find("SERVER", "productpage", operation)
        where = f"{GATEWAY} -> productpage"
        if upstream is not None:
            self._check_span(upstream, GATEWAY, None, None)
            cluster = self._check_cluster(upstream, host)
            if cluster is not None and upstream.name != f"router {cluster}; egress":
                self.problems.append(f"{span_label(upstream)}: expected the name 'router {cluster}; egress'")
            if root is not None and upstream.parent_id != root.id:
                self.problems.append(f"{where}: the gateway's upstream span's parentId {upstream.parent_id} is not "
                                     f"the id {root.id} of its root span")
        if server is not None:
            self._check_span(server, "productpage", operation, f"inbound|{SERVICE_PORT}||")
        if upstream is not None and server is not None:
            self._check_pair(where, upstream, server)
        return server

    def _check_cluster(self, span: Span, host: str) -> str | None:
        cluster = span.tags.get("upstream_cluster")
        if cluster is None or not outbound_cluster_pattern(host).fullmatch(cluster):
            self.problems.append(f"{span_label(span)}: tag upstream_cluster={cluster!r}, expected "
                                 f"'outbound|{SERVICE_PORT}||{host}' (or with a subset)")
            return None
        return cluster

    def check_rpc(self, rpc: Rpc, caller_server: Span | None) -> Span | None:
        """Checks the CLIENT/SERVER pair of `rpc`; returns the callee's SERVER span."""
        host = service_host(rpc.callee, self._namespace_of(rpc.callee))
        name = f"{host}:{SERVICE_PORT}/*"
        client = self._find("CLIENT", rpc.caller, name)
        server = self._find("SERVER", rpc.callee, name)
        where = f"{rpc.caller} -> {rpc.callee}"
        if client is not None:
            self._check_span(client, rpc.caller, name, None)
            self._check_cluster(client, host)
            if caller_server is not None and client.parent_id != caller_server.id:
                self.problems.append(f"{where}: the CLIENT span's parentId {client.parent_id} is not the id "
                                     f"{caller_server.id} of {rpc.caller}'s SERVER span")
        if server is not None:
            self._check_span(server, rpc.callee, name, f"inbound|{SERVICE_PORT}||")
        if client is not None and server is not None:
            self._check_pair(where, client, server)
        return server

    def _check_pair(self, where: str, client: Span, server: Span) -> None:
        if server.parent_id != client.id:
            self.problems.append(f"{where}: the SERVER span's parentId {server.parent_id} is not the CLIENT "
                                 f"span's id {client.id}")
        if server.trace_id != client.trace_id:
            self.problems.append(f"{where}: CLIENT and SERVER spans have different trace ids")
        if server.timestamp < client.timestamp or \
                server.timestamp + server.duration > client.timestamp + client.duration:
            self.problems.append(
                f"{where}: the SERVER span [{server.timestamp}, +{server.duration}us] does not lie within the "
                f"CLIENT span [{client.timestamp}, +{client.duration}us]")

    def _check_span(self, span: Span, service: str, name: str | None, upstream_cluster: str | None) -> None:
        label = span_label(span)
        missing = [tag for tag in REQUIRED_TAGS if tag not in span.tags]
        if missing:
            self.problems.append(f"{label}: missing tags {', '.join(missing)}")
        expected = {
            "component": "proxy",
            "http.status_code": "200",
            "response_flags": "-",
            "istio.canonical_service": self._canonical(service),
            "istio.namespace": self._namespace_of(service),
        }
        if upstream_cluster is not None:
            expected["upstream_cluster"] = upstream_cluster
        for tag, value in expected.items():
            if tag in span.tags and span.tags[tag] != value:
                self.problems.append(f"{label}: tag {tag}={span.tags[tag]!r}, expected {value!r}")
        if "error" in span.tags:
            self.problems.append(f"{label}: tagged error={span.tags['error']!r}")
        if span.duration <= 0:
            self.problems.append(f"{label}: duration {span.duration} is not positive")
        if name is not None and span.name != name:  # only a root can get here with another name
            self.problems.append(f"{label}: expected the name {name!r}")

    def check_leftovers(self) -> None:
        for index, span in enumerate(self.spans):
            if index not in self.matched:
                self.problems.append(f"unexpected span {span_label(span)}")

    def check_request_id(self) -> None:
        key = "guid:x-request-id"
        request_ids = sorted({span.tags[key] for span in self.spans if key in span.tags})
        if len(request_ids) > 1:
            self.problems.append(f"spans carry {len(request_ids)} different x-request-ids ({', '.join(request_ids)}); "
                                 "an application is not propagating x-request-id")


def summarize(traces: Sequence[BookinfoTrace]) -> dict[str, int]:
    """How many complete traces each reviews version answered (for reports and assertions)."""
    counts: dict[str, int] = {}
    for trace in traces:
        if trace.complete and trace.reviews_version is not None:
            counts[trace.reviews_version] = counts.get(trace.reviews_version, 0) + 1
    return dict(sorted(counts.items()))
