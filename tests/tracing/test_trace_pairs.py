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
# Which providers' tracers read what a caller's tracer writes: B3 (zipkin), W3C (opentelemetry, jaeger), or both.
READS_B3 = {"zipkin", "zipkin-b3-w3c", "zipkin-64bit"}
READS_W3C = {"zipkin-b3-w3c", "opentelemetry", "jaeger"}
WRITES = {"zipkin": READS_B3, "zipkin-64bit": READS_B3, "zipkin-b3-w3c": READS_B3 | READS_W3C,
          "opentelemetry": READS_W3C, "jaeger": READS_W3C}
PAIRS = [(caller, callee) for caller in PROVIDERS for callee in PROVIDERS if callee in WRITES[caller]]
UNJOINED = [(caller, callee) for caller in PROVIDERS for callee in PROVIDERS if callee not in WRITES[caller]]


def hop_span(proxy_config: ProxyConfig, direction: Direction, headers: Mapping[str, str],
             destination: str) -> tuple[Span, dict[str, str]]:
    """One proxy hop: the span it reports and the headers it forwards."""
    make = inbound_request if direction == "inbound" else outbound_request
    request = make(headers, operation=f"{destination}:9080/*")
    hop = HopTracer(proxy_config, direction, Stats(), {}).start(request, START)
    span = hop.finish(response(), START + 100)
    assert span is not None
    return span, forward(request.headers, hop)


def app_copy(inbound_headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in inbound_headers.items() if name in APP_COPIES}


@pytest.mark.parametrize(("caller_name", "callee_name"), PAIRS)
@pytest.mark.parametrize("incoming", [{}, {"x-b3-traceid": "48485a3953bb6124", "x-b3-spanid": "a2fb4a1d1a96d312"}])
def test_client_then_server_pair(caller_name: str, callee_name: str, incoming: dict[str, str]) -> None:
    caller = config(PROVIDERS[caller_name])
    callee = config(PROVIDERS[callee_name], node=REVIEWS)
    client, forwarded = hop_span(caller, "outbound", incoming, "reviews.default.svc.cluster.local")
    server, _ = hop_span(callee, "inbound", forwarded, "reviews.default.svc.cluster.local")
    assert (client.kind, server.kind) == ("CLIENT", "SERVER")
    assert server.id != client.id
    continued = bool(incoming) and caller_name in READS_B3  # the opentelemetry tracer reads no B3
    assert client.parent_id == (incoming["x-b3-spanid"] if continued else None)
    if continued:
        assert client.trace_id == incoming["x-b3-traceid"]
    if incoming and not continued and callee_name in READS_B3:
        # The caller passed the app's B3 on untouched, and B3 comes before the W3C fallback, as in Envoy.
        assert (server.trace_id, server.parent_id) == (incoming["x-b3-traceid"], incoming["x-b3-spanid"])
    else:
        assert (server.trace_id, server.parent_id) == (client.trace_id, client.id)


@pytest.mark.parametrize(("caller_name", "callee_name"), UNJOINED)
def test_a_callee_that_reads_none_of_the_callers_formats_starts_its_own_trace(caller_name: str,
                                                                             callee_name: str) -> None:
    # As between Envoys: a zipkin tracer under USE_B3 reads no traceparent, an opentelemetry one no B3.
    client, forwarded = hop_span(config(PROVIDERS[caller_name]), "outbound", {}, "reviews.default.svc.cluster.local")
    server, _ = hop_span(config(PROVIDERS[callee_name], node=REVIEWS), "inbound", forwarded,
                         "reviews.default.svc.cluster.local")
    assert server.trace_id != client.trace_id and server.parent_id is None


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


def test_caller_without_propagation_passes_on_the_context_it_received() -> None:
    # Envoy's no_context_propagation: the CLIENT span is reported, but the headers go on as they came, so the
    # callee's span is a sibling of it, under the caller's parent.
    incoming = {"x-b3-traceid": "48485a3953bb6124", "x-b3-spanid": "a2fb4a1d1a96d312", "x-b3-sampled": "1"}
    client, forwarded = hop_span(config(PROVIDERS["zipkin"], disable_context_propagation=True), "outbound",
                                 incoming, "reviews.default.svc.cluster.local")
    server, _ = hop_span(config(PROVIDERS["zipkin"], node=REVIEWS), "inbound", forwarded,
                         "reviews.default.svc.cluster.local")
    assert client.trace_id == server.trace_id == "48485a3953bb6124"
    assert client.parent_id == server.parent_id == "a2fb4a1d1a96d312"


@pytest.mark.parametrize("provider_name", list(PROVIDERS))
@pytest.mark.parametrize("policy", [{"disable_span_reporting": True}, {"provider": None}])
def test_a_middle_hop_that_reports_nothing_leaves_no_orphans(provider_name: str, policy: dict[str, object]) -> None:
    # productpage -> reviews (reporting off in both directions) -> ratings: ratings' SERVER span is the child of
    # productpage's CLIENT span, the last one reported, and the request id stays one.
    chosen = PROVIDERS[provider_name]
    productpage, ratings = config(chosen, node=PRODUCTPAGE), config(chosen, node=RATINGS)
    reviews = config(chosen, node=REVIEWS, **policy)
    root, to_productpage = hop_span(productpage, "inbound", {}, "productpage.default.svc.cluster.local")
    client, to_reviews = hop_span(productpage, "outbound", app_copy(to_productpage),
                                  "reviews.default.svc.cluster.local")
    reviews_in = HopTracer(reviews, "inbound", Stats(), {}).start(inbound_request(to_reviews), START)
    to_reviews_app = forward(to_reviews, reviews_in)
    reviews_out = HopTracer(reviews, "outbound", Stats(), {}).start(outbound_request(app_copy(to_reviews_app)), START)
    to_ratings = forward(outbound_request(app_copy(to_reviews_app)).headers, reviews_out)
    assert reviews_in.finish(response(), START + 1) is None and reviews_out.finish(response(), START + 1) is None
    server, _ = hop_span(ratings, "inbound", to_ratings, "ratings.default.svc.cluster.local")
    assert server.trace_id == client.trace_id == root.trace_id
    assert server.parent_id == client.id
    assert server.tags["guid:x-request-id"] == client.tags["guid:x-request-id"]
