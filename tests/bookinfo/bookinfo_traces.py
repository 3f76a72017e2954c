"""Builds the trace one `GET /productpage` yields under the mesh contract, for tests to check and then break."""

from __future__ import annotations

import itertools

from tracemesh_sidecar.spans.model import Endpoint, Span

TRACE_ID = "463ac35c9f6413ad48485a3953bb6124"
REQUEST_ID = "5d8a3c1e-1111-4a4a-9b9b-000000000001"
START_US = 1_700_000_000_000_000


def _tags(service: str, version: str, namespace: str, kind: str, cluster: str) -> dict[str, str]:
    return {
        "http.method": "GET", "http.url": "http://x/", "http.protocol": "HTTP/1.1", "http.status_code": "200",
        "request_size": "0", "response_size": "10", "response_flags": "-", "upstream_cluster": cluster,
        "guid:x-request-id": REQUEST_ID, "node_id": f"sidecar~10.0.0.1~{service}-{version}.{namespace}",
        "user_agent": "curl/8", "peer.address": "10.0.0.2", "component": "proxy",
        "istio.canonical_service": service, "istio.canonical_revision": version, "istio.namespace": namespace,
        "istio.mesh_id": "cluster.local", "span.kind": kind.lower(),
    }


def bookinfo_trace(reviews_version: str = "v2", namespace: str = "default", *,
                   ingress_gateway: bool = False) -> list[Span]:
    """A complete trace: every RPC a CLIENT/SERVER pair, each SERVER nested in time inside its CLIENT."""
    ids = (f"{n:016x}" for n in itertools.count(1))

    def server(service: str, version: str, parent: str | None, start: int, duration: int, ns: str = namespace,
               name: str | None = None) -> Span:
        host = f"{service}.{ns}.svc.cluster.local:9080/*"
        return Span(trace_id=TRACE_ID, id=next(ids), parent_id=parent, name=name or host, kind="SERVER",
                    timestamp=start, duration=duration, local_endpoint=Endpoint(f"{service}.{ns}", "10.0.0.1"),
                    tags=_tags(service, version, ns, "SERVER", "inbound|9080||"))

    def client(service: str, version: str, callee: str, parent: str, start: int, duration: int,
               ns: str = namespace) -> Span:
        host = f"{callee}.{namespace}.svc.cluster.local"
        return Span(trace_id=TRACE_ID, id=next(ids), parent_id=parent, name=f"{host}:9080/*", kind="CLIENT",
                    timestamp=start, duration=duration, local_endpoint=Endpoint(f"{service}.{ns}", "10.0.0.1"),
                    tags=_tags(service, version, ns, "CLIENT", f"outbound|9080||{host}"))

    spans = []
    parent = None
    start = START_US
    entry_name = None
    if ingress_gateway:  # Istio's ingress shape (tracing.go WantOtelIngressTraceRoot)
        entry_name = f"productpage.{namespace}.svc.cluster.local:9080/productpage"
        cluster = f"outbound|9080||productpage.{namespace}.svc.cluster.local"
        gateway = server("istio-ingressgateway", "latest", None, start, 10_000, "istio-system", name=entry_name)
        gateway.tags["upstream_cluster"] = cluster
        upstream = client("istio-ingressgateway", "latest", "productpage", gateway.id, start + 50, 9_900,
                          "istio-system")
        upstream.name = f"router {cluster}; egress"
        spans += [gateway, upstream]
        parent, start = upstream.id, start + 100
    root = server("productpage", "v1", parent, start, 9_000, name=entry_name)
    to_details = client("productpage", "v1", "details", root.id, start + 100, 2_000)
    details = server("details", "v1", to_details.id, start + 200, 1_800)
    to_reviews = client("productpage", "v1", "reviews", root.id, start + 2_500, 6_000)
    reviews = server("reviews", reviews_version, to_reviews.id, start + 2_600, 5_800)
    spans += [root, to_details, details, to_reviews, reviews]
    if reviews_version != "v1":
        to_ratings = client("reviews", reviews_version, "ratings", reviews.id, start + 2_700, 3_000)
        ratings = server("ratings", "v1", to_ratings.id, start + 2_800, 2_800)
        spans += [to_ratings, ratings]
    return spans


def find(spans: list[Span], kind: str, service: str, target: str | None = None) -> Span:
    """The one span of `kind` reported by `service`, and for `target` named after that service."""
    [span] = [s for s in spans if s.kind == kind and (s.local_endpoint.service_name or "").startswith(f"{service}.")
              and (target is None or s.name.startswith(f"{target}."))]
    return span
