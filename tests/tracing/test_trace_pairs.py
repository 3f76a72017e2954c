"""The contract's pair rule across proxies: the SERVER span's parentId is the CLIENT span's id, one traceId."""

from collections.abc import Mapping

import pytest
from trace_hop_helpers import REVIEWS, config, forward, inbound_request, outbound_request, provider, response

from tracemesh_sidecar.config.model import NodeIdentity, ProviderConfig, ProxyConfig
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.stats import Stats
from tracemesh_sidecar.tracing import TRACE_HEADERS, HopTracer
from tracemesh_sidecar.tracing.facts import Direction

START = 1_763_700_000_000_000
PROVIDERS = {
    "zipkin": provider("zipkin"),
    "zipkin-b3-w3c": provider("zipkin", trace_context_option="USE_B3_WITH_W3C_PROPAGATION"),
    "zipkin-64bit": provider("zipkin", enable_64bit_trace_id=True),
    "opentelemetry": provider("opentelemetry"),
    "jaeger": provider("jaeger"),
}
RATINGS = NodeIdentity(pod_name="ratings-v1-x", namespace="default", pod_ip="10.244.0.11", canonical_service="ratings")
PRODUCTPAGE = NodeIdentity(pod_name="productpage-v1-x", namespace="default", pod_ip="10.244.0.5",
                           canonical_service="productpage")
# What a Bookinfo service copies from its inbound request to its outbound requests.
APP_COPIES = TRACE_HEADERS | {"x-request-id"}


def hop_span(proxy_config: ProxyConfig, direction: Direction, headers: Mapping[str, str],
             destination: str) -> tuple[Span, dict[str, str]]:
    """One proxy hop: the span it reports and the headers it forwards."""
    make = inbound_request if direction == "inbound" else outbound_request
    request = make(headers, destination_host=destination)
    hop = HopTracer(proxy_config, direction, Stats(), {}).start(request, START)
    span = hop.finish(response(), START + 100)
    assert span is not None
    return span, forward(request.headers, hop)


def app_copy(inbound_headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in inbound_headers.items() if name in APP_COPIES}


@pytest.mark.parametrize("callee_name", list(PROVIDERS))
@pytest.mark.parametrize("caller_name", list(PROVIDERS))
@pytest.mark.parametrize("incoming", [{}, {"x-b3-traceid": "48485a3953bb6124", "x-b3-spanid": "a2fb4a1d1a96d312"}])
def test_client_then_server_pair(caller_name: str, callee_name: str, incoming: dict[str, str]) -> None:
    caller = config(PROVIDERS[caller_name])
    callee = config(PROVIDERS[callee_name], node=REVIEWS)
    client, forwarded = hop_span(caller, "outbound", incoming, "reviews.default.svc.cluster.local")
    server, _ = hop_span(callee, "inbound", forwarded, "reviews.default.svc.cluster.local")
    assert (client.kind, server.kind) == ("CLIENT", "SERVER")
    assert server.trace_id == client.trace_id
    assert server.parent_id == client.id
    assert server.id != client.id
    assert client.parent_id == incoming.get("x-b3-spanid")
    if incoming:
        assert client.trace_id == incoming["x-b3-traceid"]


@pytest.mark.parametrize("provider_name", list(PROVIDERS))
def test_bookinfo_chain_is_one_trace(provider_name: str) -> None:
    chosen: ProviderConfig = PROVIDERS[provider_name]
    productpage, reviews, ratings = (config(chosen, node=node) for node in (PRODUCTPAGE, REVIEWS, RATINGS))
    root, to_productpage = hop_span(productpage, "inbound", {}, "productpage.default.svc.cluster.local")
    to_reviews_client, to_reviews = hop_span(productpage, "outbound", app_copy(to_productpage),
                                             "reviews.default.svc.cluster.local")
    reviews_server, to_reviews_app = hop_span(reviews, "inbound", to_reviews, "reviews.default.svc.cluster.local")
    to_ratings_client, to_ratings = hop_span(reviews, "outbound", app_copy(to_reviews_app),
                                             "ratings.default.svc.cluster.local")
    ratings_server, _ = hop_span(ratings, "inbound", to_ratings, "ratings.default.svc.cluster.local")
    chain = [root, to_reviews_client, reviews_server, to_ratings_client, ratings_server]
    assert len({span.trace_id for span in chain}) == 1
    assert [span.parent_id for span in chain] == [None] + [span.id for span in chain[:-1]]
    assert [span.kind for span in chain] == ["SERVER", "CLIENT", "SERVER", "CLIENT", "SERVER"]
    assert len(root.trace_id) == (16 if chosen.enable_64bit_trace_id else 32)
    assert to_productpage["x-request-id"] == to_ratings["x-request-id"]
    assert len({span.tags["guid:x-request-id"] for span in chain}) == 1


def test_caller_without_propagation_starts_a_separate_trace_at_the_callee() -> None:
    incoming = {"x-b3-traceid": "48485a3953bb6124", "x-b3-spanid": "a2fb4a1d1a96d312", "x-b3-sampled": "1"}
    client, forwarded = hop_span(config(PROVIDERS["zipkin"], disable_context_propagation=True), "outbound",
                                 incoming, "reviews.default.svc.cluster.local")
    server, _ = hop_span(config(PROVIDERS["zipkin"], node=REVIEWS), "inbound", forwarded,
                         "reviews.default.svc.cluster.local")
    assert client.trace_id == "48485a3953bb6124"
    assert server.parent_id is None and server.trace_id != client.trace_id
