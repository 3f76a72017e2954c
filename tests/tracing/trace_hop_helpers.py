"""Builders shared by the hop tests: a workload's config, request/response facts, and header forwarding."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tracemesh_sidecar.config.model import (
    NodeIdentity,
    ProviderConfig,
    ProviderKind,
    ProxyConfig,
    TracingConfig,
    TracingPolicy,
)
from tracemesh_sidecar.tracing import Hop, RequestFacts, ResponseFacts

PRODUCTPAGE = NodeIdentity(pod_name="productpage-v1-6b746f74dc-9stfs", namespace="default", pod_ip="10.244.0.5",
                           canonical_service="productpage", canonical_revision="v1")
REVIEWS = NodeIdentity(pod_name="reviews-v2-5b667bcbf8-xk2xm", namespace="default", pod_ip="10.244.0.9",
                       canonical_service="reviews", canonical_revision="v2")
TARGETS: dict[str, tuple[str, int, str]] = {
    "zipkin": ("zipkin.istio-system.svc.cluster.local", 9411, "/api/v2/spans"),
    "opentelemetry": ("opentelemetry-collector.observability.svc.cluster.local", 4318, "/v1/traces"),
    "jaeger": ("jaeger-collector.istio-system.svc.cluster.local", 4318, "/v1/traces"),
}


def provider(kind: ProviderKind = "zipkin", **settings: Any) -> ProviderConfig:
    service, port, path = TARGETS[kind]
    return ProviderConfig(name=f"my-{kind}", kind=kind, service=service, port=port, path=path, **settings)


def config(provider_config: ProviderConfig | None = None, node: NodeIdentity = PRODUCTPAGE,
           extra_extract: tuple[str, ...] = (), **policy: Any) -> ProxyConfig:
    """A workload whose client and server policies are alike: 100% sampling unless `policy` says otherwise."""
    name = provider_config.name if provider_config is not None else None
    settings = {"provider": name, "sampling_percentage": 100.0, **policy}
    tracing_policy = TracingPolicy(**settings)
    providers = (provider_config,) if provider_config is not None else ()
    return ProxyConfig(node=node, providers=providers,
                       tracing=TracingConfig(client=tracing_policy, server=tracing_policy, extra_extract=extra_extract))


def outbound_request(headers: Mapping[str, str] | None = None, **changes: Any) -> RequestFacts:
    """productpage's app calling reviews through its sidecar's outbound listener."""
    facts = RequestFacts(
        method="GET", target="/reviews/0", authority="reviews:9080", protocol="HTTP/1.1",
        headers={"host": "reviews:9080", "user-agent": "python-requests/2.31.0", **(headers or {})},
        peer=("127.0.0.1", 45678), operation="reviews.default.svc.cluster.local:9080/*",
        cluster="outbound|9080||reviews.default.svc.cluster.local",
    )
    return replace(facts, **changes)


def inbound_request(headers: Mapping[str, str] | None = None, **changes: Any) -> RequestFacts:
    """A call from productpage's pod arriving at reviews' sidecar inbound listener."""
    return outbound_request(headers, **{"peer": ("10.244.0.5", 51234), "cluster": "inbound|9080||", **changes})


def response(**changes: Any) -> ResponseFacts:
    facts = ResponseFacts(status=200, request_size=0, response_size=358, response_flags="-",
                          upstream=("10.244.0.9", 9080))
    return replace(facts, **changes)


def forward(headers: Mapping[str, str], hop: Hop) -> dict[str, str]:
    """The forwarded request's headers, as the proxy builds them from the hop."""
    result = {name: value for name, value in headers.items() if name not in hop.headers_to_remove}
    result.update(hop.headers_to_set)
    return result
