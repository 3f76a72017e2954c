import re
import uuid
from dataclasses import replace
from typing import Any

import pytest
from trace_hop_helpers import (
    PRODUCTPAGE,
    config,
    forward,
    inbound_request,
    outbound_request,
    provider,
    response,
)

from tracemesh_sidecar.config.model import CustomTag, ProxyConfig
from tracemesh_sidecar.spans.model import Endpoint
from tracemesh_sidecar.stats import Stats
from tracemesh_sidecar.tracing import TRACE_HEADERS, HopTracer
from tracemesh_sidecar.tracing.facts import Direction

TRACE = "463ac35c9f6413ad48485a3953bb6124"
TRACE64 = "48485a3953bb6124"
SPAN = "a2fb4a1d1a96d312"
B3_SAMPLED = {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "1"}
# A UUID4 request id whose first 8 hex digits are 0x00001388 = 5000: 5000 % 10000 samples at over 50%.
REQUEST_ID = "00001388-0000-4000-8000-000000000001"
HEX16 = re.compile(r"[0-9a-f]{16}")
START = 1_763_700_000_000_000


def tracer(proxy_config: ProxyConfig, direction: Direction = "outbound", stats: Stats | None = None,
           environ: dict[str, str] | None = None) -> HopTracer:
    return HopTracer(proxy_config, direction, stats or Stats(), environ or {})


def set_headers(hop: Any) -> dict[str, str]:
    return dict(hop.headers_to_set)


# --- x-request-id ------------------------------------------------------------------------------


@pytest.mark.parametrize("enabled", [True, False])
def test_missing_request_id_is_generated_and_set(enabled: bool) -> None:
    hop = tracer(config(provider(), enabled=enabled)).start(outbound_request(), START)
    request_id = set_headers(hop)["x-request-id"]
    # A UUID4, whose version digit carries Envoy's trace reason once a tracer sampled it ("9").
    assert str(uuid.UUID(request_id)) == request_id and request_id[14] == ("9" if enabled else "4")


@pytest.mark.parametrize("enabled", [True, False])
def test_existing_request_id_passes_unchanged(enabled: bool) -> None:
    hop = tracer(config(provider(), enabled=enabled)).start(outbound_request({"x-request-id": "abc-1"}), START)
    assert "x-request-id" not in set_headers(hop)
    assert "x-request-id" not in hop.headers_to_remove


def test_empty_request_id_is_replaced() -> None:
    hop = tracer(config(provider())).start(outbound_request({"x-request-id": ""}), START)
    assert uuid.UUID(set_headers(hop)["x-request-id"])


def test_request_id_is_the_guid_tag() -> None:
    hop = tracer(config(provider())).start(outbound_request({**B3_SAMPLED, "x-request-id": "abc-1"}), START)
    span = hop.finish(response(), START + 10)
    assert span is not None and span.tags["guid:x-request-id"] == "abc-1"
    generated = tracer(config(provider())).start(outbound_request(), START)
    span = generated.finish(response(), START + 10)
    assert span is not None and span.tags["guid:x-request-id"] == set_headers(generated)["x-request-id"]


# --- policy flags ------------------------------------------------------------------------------


EVERY_FORMAT = {
    "x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-parentspanid": "0000000000000001", "x-b3-sampled": "1",
    "x-b3-flags": "0", "b3": f"{TRACE}-{SPAN}-1", "traceparent": f"00-{TRACE}-{SPAN}-01", "tracestate": "k=v",
    "uber-trace-id": f"{TRACE}:{SPAN}:0:1", "ot-tracer-traceid": TRACE, "ot-tracer-spanid": SPAN,
    "ot-tracer-sampled": "true",
}


@pytest.mark.parametrize("policy", [
    {"enabled": False}, {"disable_span_reporting": True}, {"provider": None},
], ids=["tracing off", "disableSpanReporting", "no provider"])
def test_a_direction_without_a_tracer_passes_every_trace_header_untouched(policy: dict[str, Any]) -> None:
    # Istio compiles disableSpanReporting and a missing provider to `Disabled` (pilot/pkg/model/telemetry.go),
    # for which tracing.go configures no tracer at all: Envoy then only ensures x-request-id, so the next
    # hop's span is the child of the last reported one instead of a span that was never reported.
    stats = Stats()
    incoming = {**EVERY_FORMAT, "x-request-id": REQUEST_ID, "x-envoy-decorator-operation": "op"}
    hop = tracer(config(provider(), **policy), stats=stats).start(outbound_request(incoming), START)
    assert hop.headers_to_set == []  # not even the sampling decision packed into x-request-id
    assert hop.headers_to_remove == {"x-envoy-force-trace"}
    assert forward(incoming, hop) == incoming
    assert hop.finish(response(), START + 10) is None
    assert hop.provider is None
    assert stats.counters == {}  # the headers were not even read


def test_disabled_context_propagation_reports_but_leaves_the_headers_as_they_came() -> None:
    # Envoy's no_context_propagation skips injectContext: the span is reported, the headers pass as received.
    incoming = {**B3_SAMPLED, "x-request-id": "r"}
    hop = tracer(config(provider(), disable_context_propagation=True)).start(outbound_request(incoming), START)
    assert [name for name, _ in hop.headers_to_set] == ["x-envoy-decorator-operation"]
    assert hop.headers_to_remove == {"x-envoy-force-trace"}
    span = hop.finish(response(), START + 10)
    assert span is not None
    assert (span.trace_id, span.parent_id) == (TRACE, SPAN)


def test_provider_name_is_on_the_hop() -> None:
    assert tracer(config(provider("jaeger"))).start(outbound_request(), START).provider == "my-jaeger"


def test_each_direction_uses_its_own_policy() -> None:
    base = config(provider())
    proxy_config = ProxyConfig(node=base.node, providers=base.providers, tracing=type(base.tracing)(
        client=base.tracing.client, server=type(base.tracing.client)(provider=None, sampling_percentage=100.0)))
    assert tracer(proxy_config, "outbound").start(outbound_request(), START).provider == "my-zipkin"
    assert tracer(proxy_config, "inbound").start(inbound_request(), START).provider is None


def test_unknown_direction_is_refused() -> None:
    with pytest.raises(ValueError, match="direction"):
        HopTracer(config(provider()), "sideways", Stats())  # type: ignore[arg-type]


# --- ids, parents, sampling ---------------------------------------------------------------------


def test_root_span_gets_a_new_trace_and_no_parent() -> None:
    hop = tracer(config(provider())).start(outbound_request(), START)
    written = set_headers(hop)
    assert re.fullmatch(r"[0-9a-f]{32}", written["x-b3-traceid"])
    assert HEX16.fullmatch(written["x-b3-spanid"])
    assert "x-b3-parentspanid" not in written
    assert "x-b3-parentspanid" in hop.headers_to_remove
    span = hop.finish(response(), START + 10)
    assert span is not None
    assert (span.trace_id, span.id, span.parent_id) == (written["x-b3-traceid"], written["x-b3-spanid"], None)


def test_child_span_continues_the_trace_with_a_new_span_id() -> None:
    hop = tracer(config(provider())).start(outbound_request(B3_SAMPLED), START)
    written = set_headers(hop)
    span = hop.finish(response(), START + 10)
    assert span is not None
    assert span.trace_id == written["x-b3-traceid"] == TRACE
    assert span.parent_id == written["x-b3-parentspanid"] == SPAN
    assert span.id == written["x-b3-spanid"] != SPAN


@pytest.mark.parametrize(("bits64", "incoming", "b3_trace", "traceparent_trace"), [
    (True, {}, r"[0-9a-f]{16}", r"0{16}[0-9a-f]{16}"),
    (False, {}, r"[0-9a-f]{32}", r"[0-9a-f]{32}"),
    # A 64-bit id received is kept, whatever the configured width; W3C carries it padded.
    (False, {"x-b3-traceid": TRACE64, "x-b3-spanid": SPAN}, TRACE64, "0" * 16 + TRACE64),
    (True, {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN}, TRACE, TRACE),
])
def test_trace_id_width(bits64: bool, incoming: dict[str, str], b3_trace: str, traceparent_trace: str) -> None:
    zipkin = provider(enable_64bit_trace_id=bits64, trace_context_option="USE_B3_WITH_W3C_PROPAGATION")
    hop = tracer(config(zipkin)).start(outbound_request(incoming), START)
    written = set_headers(hop)
    assert re.fullmatch(b3_trace, written["x-b3-traceid"])
    version, trace, span, flags = written["traceparent"].split("-")
    assert re.fullmatch(traceparent_trace, trace)
    assert (version, span, flags) == ("00", written["x-b3-spanid"], "01")
    finished = hop.finish(response(), START + 10)
    assert finished is not None and finished.trace_id == written["x-b3-traceid"]


@pytest.mark.parametrize(("incoming", "percentage", "sampled", "debug"), [
    ({}, 100.0, "1", False),
    ({}, 0.0, "0", False),
    ({"x-b3-sampled": "1"}, 0.0, "1", False),  # a sampling-only header is obeyed
    ({"x-b3-sampled": "0"}, 100.0, "0", False),
    ({**B3_SAMPLED, "x-b3-sampled": "0"}, 100.0, "0", False),
    ({**B3_SAMPLED}, 0.0, "1", False),
    ({"b3": "0"}, 100.0, "0", False),
    ({"b3": "d"}, 0.0, "1", True),
    ({"b3": f"{TRACE}-{SPAN}-1"}, 0.0, "1", False),
    ({"traceparent": f"00-{TRACE}-{SPAN}-00"}, 100.0, "0", False),
    ({"traceparent": f"00-{TRACE}-{SPAN}-01"}, 0.0, "1", False),
    ({"x-b3-flags": "1"}, 0.0, "1", True),  # debug forces
    ({**B3_SAMPLED, "x-b3-sampled": "0", "x-b3-flags": "1"}, 0.0, "1", True),
    # A malformed decision is no decision: the percentage decides.
    ({"x-b3-sampled": "yes"}, 0.0, "0", False),
    ({"x-b3-sampled": "yes"}, 100.0, "1", False),
])
def test_sampling_decision_is_obeyed_and_passed_on(incoming: dict[str, str], percentage: float, sampled: str,
                                                  debug: bool) -> None:
    zipkin = provider(trace_context_option="USE_B3_WITH_W3C_PROPAGATION")
    hop = tracer(config(zipkin, sampling_percentage=percentage)).start(outbound_request(incoming), START)
    written = set_headers(hop)
    assert written["x-b3-sampled"] == sampled
    assert ("x-b3-flags" in written) is debug
    if debug:
        assert written["x-b3-flags"] == "1"
    span = hop.finish(response(), START + 10)
    if sampled == "1":
        assert span is not None and span.debug is debug
    else:
        assert span is None


def test_sampling_decision_in_traceparent_flags() -> None:
    hop = tracer(config(provider("opentelemetry"), sampling_percentage=0.0)).start(outbound_request(), START)
    assert set_headers(hop)["traceparent"].endswith("-00")
    assert hop.finish(response(), START + 10) is None


def test_percentage_samples_about_that_share() -> None:
    sampler = tracer(config(provider(), sampling_percentage=30.0))
    sampled = sum(sampler.start(outbound_request(), START).finish(response(), START + 1) is not None
                  for _ in range(2000))
    assert 450 <= sampled <= 750


# --- which headers are written and stripped -----------------------------------------------------

B3_WRITTEN = {"x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled"}
W3C_WRITTEN = {"traceparent", "tracestate"}


B3_OWNED = {"x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3"}


@pytest.mark.parametrize(("provider_config", "written", "owned"), [
    (provider("zipkin"), B3_WRITTEN, B3_OWNED),
    (provider("zipkin", trace_context_option="USE_B3_WITH_W3C_PROPAGATION"), B3_WRITTEN | W3C_WRITTEN,
     B3_OWNED | W3C_WRITTEN),
    (provider("opentelemetry"), W3C_WRITTEN, W3C_WRITTEN),
    (provider("jaeger"), W3C_WRITTEN, W3C_WRITTEN),
])
def test_a_tracer_writes_its_formats_and_passes_the_others_untouched(provider_config: Any, written: set[str],
                                                                   owned: set[str]) -> None:
    # Envoy's zipkin tracer sets B3 (and traceparent under USE_B3_WITH_W3C_PROPAGATION) and leaves every
    # other header alone; its opentelemetry tracer sets traceparent/tracestate and leaves B3 alone. Only a
    # stale header of the tracer's own formats is dropped, so that the next hop cannot misread it.
    incoming = outbound_request(EVERY_FORMAT).headers
    hop = tracer(config(provider_config)).start(outbound_request(EVERY_FORMAT), START)
    assert set(set_headers(hop)) - {"x-request-id", "x-envoy-decorator-operation"} == written
    assert hop.headers_to_remove == (owned - written) | {"x-envoy-force-trace"}
    forwarded = forward(incoming, hop)
    for name in TRACE_HEADERS - owned:
        assert forwarded[name] == incoming[name]
    own_span = set_headers(hop).get("x-b3-spanid") or set_headers(hop)["traceparent"].split("-")[2]
    assert own_span != SPAN
    if "tracestate" in written:
        assert forwarded["tracestate"] == "k=v"


@pytest.mark.parametrize(("provider_config", "incoming", "parent"), [
    # USE_B3 reads no traceparent: an app's own W3C trace is neither continued nor disturbed.
    (provider("zipkin"), {"traceparent": f"00-{'1' * 32}-{SPAN}-01"}, None),
    (provider("zipkin", trace_context_option="USE_B3_WITH_W3C_PROPAGATION"),
     {"traceparent": f"00-{TRACE}-{SPAN}-01"}, SPAN),
    # The opentelemetry tracer reads no B3.
    (provider("opentelemetry"), B3_SAMPLED, None),
    (provider("opentelemetry"), {"traceparent": f"00-{TRACE}-{SPAN}-01"}, SPAN),
])
def test_a_tracer_reads_only_its_formats(provider_config: Any, incoming: dict[str, str], parent: str | None) -> None:
    span = tracer(config(provider_config)).start(outbound_request(incoming), START).finish(response(), START + 1)
    assert span is not None and span.parent_id == parent


def test_tracestate_is_dropped_when_its_trace_is_not_continued() -> None:
    incoming = {"traceparent": f"00-{'0' * 32}-{SPAN}-01", "tracestate": "k=v"}
    hop = tracer(config(provider("opentelemetry"))).start(outbound_request(incoming), START)
    assert "tracestate" not in set_headers(hop)
    assert "tracestate" in hop.headers_to_remove
    assert set_headers(hop)["traceparent"].split("-")[1] != "0" * 32


def test_debug_flag_is_written_and_not_stripped() -> None:
    hop = tracer(config(provider())).start(outbound_request({**B3_SAMPLED, "x-b3-flags": "1"}), START)
    assert set_headers(hop)["x-b3-flags"] == "1"
    assert "x-b3-flags" not in hop.headers_to_remove


def test_stale_flags_header_is_stripped_when_not_debug() -> None:
    hop = tracer(config(provider())).start(outbound_request({**B3_SAMPLED, "x-b3-flags": "0"}), START)
    assert "x-b3-flags" in hop.headers_to_remove


# --- malformed headers ---------------------------------------------------------------------------


def test_malformed_headers_are_counted_and_ignored() -> None:
    stats = Stats()
    incoming = {"x-b3-traceid": "nothex", "x-b3-spanid": SPAN, "b3": "1-2-3", "traceparent": f"00-{TRACE}-{SPAN}-01",
                "uber-trace-id": "bad"}
    zipkin = provider(trace_context_option="USE_B3_WITH_W3C_PROPAGATION")
    hop = tracer(config(zipkin, extra_extract=("jaeger",)), stats=stats).start(outbound_request(incoming), START)
    assert set_headers(hop)["x-b3-traceid"] == TRACE  # from traceparent, the first valid format
    assert stats.counters == {
        "tracing.malformed_trace_headers": 3, "tracing.malformed.b3": 1, "tracing.malformed.b3_single": 1,
        "tracing.malformed.jaeger": 1,
    }
    forwarded = forward(incoming, hop)
    assert "b3" not in forwarded  # a stale header of the tracer's own format
    assert forwarded["uber-trace-id"] == "bad"  # read where configured, but never the tracer's to drop


def test_only_malformed_headers_start_a_new_trace() -> None:
    stats = Stats()
    hop = tracer(config(provider()), stats=stats).start(outbound_request({"x-b3-traceid": "0" * 32,
                                                                        "x-b3-spanid": SPAN}), START)
    span = hop.finish(response(), START + 10)
    assert span is not None and span.trace_id != "0" * 32 and span.parent_id is None
    assert stats.get("tracing.malformed.b3") == 1


# --- the span ------------------------------------------------------------------------------------


def test_client_span_shape() -> None:
    hop = tracer(config(provider())).start(outbound_request({**B3_SAMPLED, "x-request-id": "rid"}), START)
    span = hop.finish(response(), START + 1500)
    assert span is not None
    assert span.name == "reviews.default.svc.cluster.local:9080/*"
    assert span.kind == "CLIENT"
    assert (span.timestamp, span.duration) == (START, 1500)
    assert span.local_endpoint == Endpoint(service_name="productpage.default", ipv4="10.244.0.5")
    assert span.remote_endpoint == Endpoint(ipv4="10.244.0.9", port=9080)
    assert span.tags == {
        "http.method": "GET",
        "http.url": "http://reviews:9080/reviews/0",
        "http.protocol": "HTTP/1.1",
        "http.status_code": "200",
        "request_size": "0",
        "response_size": "358",
        "response_flags": "-",
        "upstream_cluster": "outbound|9080||reviews.default.svc.cluster.local",
        "guid:x-request-id": "rid",
        "node_id": "sidecar~10.244.0.5~productpage-v1-6b746f74dc-9stfs.default~default.svc.cluster.local",
        "user_agent": "python-requests/2.31.0",
        "peer.address": "127.0.0.1",
        "component": "proxy",
        "istio.canonical_service": "productpage",
        "istio.canonical_revision": "v1",
        "istio.namespace": "default",
        "istio.mesh_id": "cluster.local",
        "istio.cluster_id": "Kubernetes",
    }
    assert span.debug is False


def test_istio_tags_only_with_enable_istio_tags() -> None:
    # pilot/pkg/networking/core/tracing.go configureCustomTags: buildServiceTags only when spec.EnableIstioTags.
    hop = tracer(config(provider(), enable_istio_tags=False)).start(outbound_request(B3_SAMPLED), START)
    span = hop.finish(response(), START + 1)
    assert span is not None
    assert not [name for name in span.tags if name.startswith("istio.")]
    assert span.tags["node_id"] == PRODUCTPAGE.node_id() and span.tags["component"] == "proxy"


def test_use_request_id_for_trace_sampling_off_leaves_the_decision_to_the_tracer() -> None:
    # ConnectionManagerUtility::mutateTracingRequestHeader: the request id then says "Sampling" for every request,
    # and is not rewritten; an upstream decision still wins.
    proxy_config = config(provider(), sampling_percentage=0.0, use_request_id_for_trace_sampling=False)
    hop = tracer(proxy_config).start(outbound_request({"x-request-id": REQUEST_ID}), START)
    assert set_headers(hop)["x-b3-sampled"] == "1" and "x-request-id" not in set_headers(hop)
    hop = tracer(proxy_config).start(outbound_request({"x-b3-sampled": "0"}), START)
    assert set_headers(hop)["x-b3-sampled"] == "0"


@pytest.mark.parametrize(("percentage", "sampled", "forwarded"), [
    (50.01, "1", REQUEST_ID[:14] + "9" + REQUEST_ID[15:]),  # 0x1388 = 5000 < 5001
    (50.0, "0", None),
])
def test_sampling_follows_the_request_id_and_packs_the_decision(percentage: float, sampled: str,
                                                                 forwarded: str | None) -> None:
    hop = tracer(config(provider(), sampling_percentage=percentage)).start(
        outbound_request({"x-request-id": REQUEST_ID}), START)
    assert set_headers(hop)["x-b3-sampled"] == sampled
    assert set_headers(hop).get("x-request-id") == forwarded


def test_client_trace_id_forces_sampling_and_is_tagged() -> None:
    hop = tracer(config(provider(), sampling_percentage=0.0)).start(
        outbound_request({"x-request-id": REQUEST_ID, "x-client-trace-id": "abc"}), START)
    span = hop.finish(response(), START + 1)
    assert span is not None
    assert span.tags["guid:x-client-trace-id"] == "abc"
    assert span.tags["guid:x-request-id"] == set_headers(hop)["x-request-id"] == REQUEST_ID[:14] + "b" + REQUEST_ID[15:]


def test_force_trace_is_removed_and_not_honoured() -> None:
    # Envoy honours x-envoy-force-trace for internal requests only; cleanInternalHeaders strips it from the
    # others, and an Istio sidecar takes no request for internal (useRemoteAddress false, no trusted XFF).
    hop = tracer(config(provider(), sampling_percentage=0.0)).start(
        outbound_request({"x-request-id": REQUEST_ID, "x-envoy-force-trace": "true"}), START)
    assert "x-envoy-force-trace" in hop.headers_to_remove
    assert set_headers(hop)["x-b3-sampled"] == "0"


def test_server_span_shape() -> None:
    request = inbound_request(B3_SAMPLED, authority="some-alias:80", operation="reviews.default.svc.cluster.local:80/*",
                              cluster="inbound|9080||")
    hop = tracer(config(provider()), "inbound").start(request, START)
    assert "x-envoy-decorator-operation" not in set_headers(hop)
    span = hop.finish(response(upstream=("127.0.0.1", 9080)), START + 900)
    assert span is not None
    assert span.name == "reviews.default.svc.cluster.local:80/*"  # the route's, whatever Host the caller sent
    assert span.kind == "SERVER"
    assert span.remote_endpoint == Endpoint(ipv4="10.244.0.5", port=51234)  # the downstream peer
    assert span.tags["upstream_cluster"] == "inbound|9080||"
    assert span.tags["peer.address"] == "10.244.0.5"
    assert span.tags["http.url"] == "http://some-alias:80/reviews/0"


# --- x-envoy-decorator-operation (ConnectionManagerImpl::ActiveStream::traceRequest) ----------------


def test_outbound_sends_its_route_operation_to_the_server() -> None:
    hop = tracer(config(provider())).start(outbound_request({"x-envoy-decorator-operation": "app's"}), START)
    assert set_headers(hop)["x-envoy-decorator-operation"] == "reviews.default.svc.cluster.local:9080/*"


def test_outbound_passthrough_has_no_decorator_to_send() -> None:
    request = outbound_request({"x-envoy-decorator-operation": "app's"}, decorated=False)
    hop = tracer(config(provider())).start(request, START)
    assert "x-envoy-decorator-operation" not in set_headers(hop)
    assert forward(request.headers, hop)["x-envoy-decorator-operation"] == "app's"


@pytest.mark.parametrize(("sent", "name"), [
    ("reviews.default.svc.cluster.local:9080/*", "reviews.default.svc.cluster.local:9080/*"),
    ("custom-operation", "custom-operation"),
    ("", "reviews-alias.default.svc.cluster.local:80/*"),  # an empty one is ignored, and still removed
])
def test_inbound_names_its_span_after_the_callers_operation_and_removes_it(sent: str, name: str) -> None:
    request = inbound_request({**B3_SAMPLED, "x-envoy-decorator-operation": sent},
                              operation="reviews-alias.default.svc.cluster.local:80/*")
    hop = tracer(config(provider()), "inbound").start(request, START)
    assert "x-envoy-decorator-operation" in hop.headers_to_remove
    span = hop.finish(response(), START + 1)
    assert span is not None and span.name == name


def test_inbound_without_a_tracer_leaves_the_operation_header_to_the_app() -> None:
    request = inbound_request({"x-envoy-decorator-operation": "op"})
    hop = tracer(config(None), "inbound").start(request, START)
    assert forward(request.headers, hop)["x-envoy-decorator-operation"] == "op"


@pytest.mark.parametrize(("changes", "url"), [
    ({"target": "http://reviews:9080/reviews/0?x=1", "authority": "reviews:9080"}, "http://reviews:9080/reviews/0?x=1"),
    ({"target": "https://api.example.com/v1", "authority": "api.example.com"}, "https://api.example.com/v1"),
    ({"target": "/a?b=c", "authority": "details.default:9080"}, "http://details.default:9080/a?b=c"),
])
def test_http_url(changes: dict[str, Any], url: str) -> None:
    span = tracer(config(provider())).start(outbound_request(**changes), START).finish(response(), START + 1)
    assert span is not None and span.tags["http.url"] == url


def test_client_span_without_an_upstream_connection_has_no_remote_endpoint() -> None:
    hop = tracer(config(provider())).start(outbound_request(), START)
    span = hop.finish(response(status=503, response_flags="UF", upstream=None), START + 5)
    assert span is not None and span.remote_endpoint is None


def test_ipv6_endpoints() -> None:
    node = type(PRODUCTPAGE)(pod_name="p", namespace="default", pod_ip="fd00::5", canonical_service="productpage")
    hop = tracer(config(provider(), node=node), "inbound").start(inbound_request(peer=("fd00::9", 4000)), START)
    span = hop.finish(response(), START + 5)
    assert span is not None
    assert span.local_endpoint == Endpoint(service_name="productpage.default", ipv6="fd00::5")
    assert span.remote_endpoint == Endpoint(ipv6="fd00::9", port=4000)


def test_zero_duration_is_reported_as_one_microsecond() -> None:
    span = tracer(config(provider())).start(outbound_request(), START).finish(response(), START)
    assert span is not None and span.duration == 1


def test_missing_user_agent_is_a_dash() -> None:
    request = replace(outbound_request(), headers={"host": "reviews:9080"})
    span = tracer(config(provider())).start(request, START).finish(response(), START + 1)
    assert span is not None and span.tags["user_agent"] == "-"


@pytest.mark.parametrize(("status", "flags", "error"), [
    (200, "-", False),
    (404, "-", False),
    (499, "-", False),
    (500, "-", True),
    (503, "UF", True),
    (504, "UT", True),
    (0, "DC", True),
    (0, "-", True),
    (200, "DC", True),  # a failure after the status went out
    (503, "-", True),
])
def test_error_tag(status: int, flags: str, error: bool) -> None:
    span = tracer(config(provider())).start(outbound_request(), START).finish(
        response(status=status, response_flags=flags), START + 1)
    assert span is not None
    assert span.tags["http.status_code"] == str(status)
    assert span.tags["response_flags"] == flags
    assert span.tags.get("error") == ("true" if error else None)


def test_max_tag_length_caps_the_path_in_the_url_tag_only() -> None:
    # Envoy's max_path_tag_length (Istio's maxTagLength): buildUrl cuts the path, no other tag is touched.
    long_path = "/reviews/" + "x" * 500
    hop = tracer(config(provider(max_tag_length=40))).start(
        outbound_request({**B3_SAMPLED, "user-agent": "u" * 100, "x-request-id": "r" * 100}, target=long_path),
        START)
    span = hop.finish(response(), START + 1)
    assert span is not None
    assert span.tags["http.url"] == "http://reviews:9080" + long_path[:40]
    assert span.tags["user_agent"] == "u" * 100
    assert span.tags["guid:x-request-id"] == "r" * 100


@pytest.mark.parametrize("max_tag_length", [256, 0], ids=["default", "0 means the default"])
def test_default_max_path_tag_length_is_256(max_tag_length: int) -> None:
    request = outbound_request(target="/" + "x" * 1000)
    span = tracer(config(provider(max_tag_length=max_tag_length))).start(request, START).finish(response(), START + 1)
    assert span is not None and span.tags["http.url"] == "http://reviews:9080/" + "x" * 255


CUSTOM_TAGS = (
    CustomTag(name="cluster", kind="literal", source="east"),
    CustomTag(name="pod_env", kind="environment", source="POD_NAME"),
    CustomTag(name="env_default", kind="environment", source="UNSET_VARIABLE", default="fallback"),
    CustomTag(name="env_missing", kind="environment", source="UNSET_VARIABLE"),
    CustomTag(name="user", kind="header", source="End-User"),
    CustomTag(name="header_default", kind="header", source="x-absent", default="anon"),
    CustomTag(name="header_missing", kind="header", source="x-absent"),
    CustomTag(name="component", kind="literal", source="custom"),  # may replace a standard tag
)


def test_custom_tags() -> None:
    hop = tracer(config(provider(max_tag_length=10), custom_tags=CUSTOM_TAGS),
                 environ={"POD_NAME": "productpage-v1-x"}).start(outbound_request({"end-user": "jason"}), START)
    span = hop.finish(response(), START + 1)
    assert span is not None
    custom = {name: span.tags.get(name) for name in (tag.name for tag in CUSTOM_TAGS)}
    assert custom == {
        "cluster": "east", "pod_env": "productpage-v1-x", "env_default": "fallback", "env_missing": None,
        "user": "jason", "header_default": "anon", "header_missing": None, "component": "custom",
    }


@pytest.mark.parametrize("name", ["http.method", "http.status_code", "peer.address", "guid:x-request-id",
                                  "guid:x-client-trace-id", "node_id", "istio.namespace"])
def test_a_literal_custom_tag_replaces_the_tag_of_its_name(name: str) -> None:
    # Envoy sets the custom tags after the standard ones (the span builder's template of static tags must not be
    # written over by the standard values).
    custom = (CustomTag(name=name, kind="literal", source="custom"),)
    hop = tracer(config(provider(), custom_tags=custom)).start(
        outbound_request({"x-client-trace-id": "client-1"}), START)
    span = hop.finish(response(), START + 1)
    assert span is not None and span.tags[name] == "custom"
    plain = tracer(config(provider())).start(outbound_request({"x-client-trace-id": "client-1"}), START)
    plain_span = plain.finish(response(), START + 1)
    assert plain_span is not None
    assert set(span.tags) == set(plain_span.tags) | {name}  # nothing else added or lost


def test_custom_tags_apply_to_their_direction_only() -> None:
    base = config(provider())
    tagged = type(base.tracing.client)(provider="my-zipkin", sampling_percentage=100.0, custom_tags=CUSTOM_TAGS[:1])
    proxy_config = ProxyConfig(node=base.node, providers=base.providers,
                               tracing=type(base.tracing)(client=tagged, server=base.tracing.server))
    client = tracer(proxy_config, "outbound").start(outbound_request(), START).finish(response(), START + 1)
    server = tracer(proxy_config, "inbound").start(inbound_request(), START).finish(response(), START + 1)
    assert client is not None and client.tags["cluster"] == "east"
    assert server is not None and "cluster" not in server.tags


def test_environment_is_read_when_the_tracer_is_built() -> None:
    environ = {"POD_NAME": "first"}
    built = tracer(config(provider(), custom_tags=CUSTOM_TAGS[1:2]), environ=environ)
    environ["POD_NAME"] = "second"
    span = built.start(outbound_request(), START).finish(response(), START + 1)
    assert span is not None and span.tags["pod_env"] == "first"
