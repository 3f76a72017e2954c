"""Spans shaped like the ones the proxy reports for one RPC (mesh contract, "Spans")."""

from __future__ import annotations

from tracemesh_sidecar.spans.model import Annotation, Endpoint, Span

TRACE_ID = "4e441824ec2b6a44ffdc9bb9a6453df3"
CLIENT_ID = "ffdc9bb9a6453df3"
SERVER_ID = "0a1b2c3d4e5f6071"
ROOT_ID = "5af7183fb1d4cf5f"


def proxy_tags(direction: str, status: str = "200") -> dict[str, str]:
    cluster = "outbound|9080||reviews.default.svc.cluster.local" if direction == "outbound" else "inbound|9080||"
    return {
        "http.method": "GET",
        "http.url": "http://reviews:9080/reviews/0",
        "http.protocol": "HTTP/1.1",
        "http.status_code": status,
        "request_size": "0",
        "response_size": "358",
        "response_flags": "-",
        "upstream_cluster": cluster,
        "guid:x-request-id": "5b8a1c2e-6f0d-4c3a-9d7e-0c1b2a3f4e5d",
        "node_id": "sidecar~10.244.0.5~productpage-v1-6b7f.default~default.svc.cluster.local",
        "user_agent": "python-requests/2.31.0",
        "peer.address": "10.244.0.7",
        "component": "proxy",
        "istio.canonical_service": "productpage",
        "istio.canonical_revision": "v1",
        "istio.namespace": "default",
        "istio.mesh_id": "cluster.local",
        "my-custom-tag": "literal value",
    }


def make_client_span() -> Span:
    return Span(
        trace_id=TRACE_ID, id=CLIENT_ID, parent_id=ROOT_ID,
        name="reviews.default.svc.cluster.local:9080/*", kind="CLIENT",
        timestamp=1_763_700_000_000_000, duration=5_321,
        local_endpoint=Endpoint(service_name="productpage.default", ipv4="10.244.0.5"),
        remote_endpoint=Endpoint(ipv4="10.244.0.7", port=9080),
        tags=proxy_tags("outbound"),
    )


def make_server_span() -> Span:
    tags = proxy_tags("inbound", status="503") | {"error": "true", "response_flags": "UF"}
    return Span(
        trace_id=TRACE_ID, id=SERVER_ID, parent_id=CLIENT_ID,
        name="reviews.default.svc.cluster.local:9080/*", kind="SERVER",
        timestamp=1_763_700_000_000_900, duration=3_999,
        local_endpoint=Endpoint(service_name="reviews.default", ipv4="10.244.0.7", port=9080),
        remote_endpoint=Endpoint(ipv6="2001:db8::c001", port=51234),
        tags=tags,
        annotations=[Annotation(timestamp=1_763_700_000_001_000, value="ws")],
    )
