"""Envoy's tracing semantics through real sockets: what a sidecar forwards, names and reports.

Followed: Envoy's ConnectionManagerImpl::ActiveStream::traceRequest (x-envoy-decorator-operation),
ConnectionManagerUtility (x-envoy-force-trace, x-client-trace-id), the UUID request-id extension, and
Istio's pilot/pkg/model/telemetry.go + networking/core/tracing.go (disableSpanReporting: no tracer).
"""

from __future__ import annotations

import json
from dataclasses import replace

from proxy_harness import TRACED, Origin, client_config, request, server_config, sidecar

from tracemesh_sidecar.config.model import InboundConfig, InboundPort, TracingConfig

REVIEWS_OPERATION = "reviews.default.svc.cluster.local:9080/*"
TRACE = "463ac35c9f6413ad48485a3953bb6124"
SPAN = "a2fb4a1d1a96d312"


def _seen(body: bytes) -> dict[str, str]:
    return {key.lower(): value for key, value in json.loads(body)["headers"]}


async def test_a_server_side_without_reporting_hands_the_callers_context_to_the_app(origin: Origin) -> None:
    quiet = replace(TRACED, disable_span_reporting=True)
    async with sidecar(server_config(origin.port, tracing=TracingConfig(client=TRACED, server=quiet))) as server_side, \
            sidecar(client_config([f"127.0.0.1:{server_side.inbound_port}"])) as client_side:
        response = await request(client_side.outbound_port,
                                 b"GET http://reviews:9080/echo HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        client = (await client_side.exporters.wait_spans(1))[0]
    seen = _seen(response.body)
    # The app's own outbound calls will be children of the CLIENT span, the last one reported.
    assert (seen["x-b3-traceid"], seen["x-b3-spanid"]) == (client.trace_id, client.id)
    assert seen["x-envoy-decorator-operation"] == REVIEWS_OPERATION  # no tracer inbound: left to the app
    assert server_side.exporters.spans == []


async def test_the_server_span_takes_the_callers_route_operation(origin: Origin) -> None:
    # The workload's port 9080 is targeted by Service reviews-alias port 80; the caller addressed `reviews`.
    ports = (InboundPort(port=9080, app_port=origin.port, listen="127.0.0.1:0",
                         service_host="reviews-alias.default.svc.cluster.local", service_port=80),)
    async with sidecar(server_config(origin.port, inbound=InboundConfig(ports=ports))) as server_side, \
            sidecar(client_config([f"127.0.0.1:{server_side.inbound_port}"])) as client_side:
        via_mesh = await request(client_side.outbound_port,
                                 b"GET http://reviews:9080/echo HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        direct = await request(server_side.inbound_port, b"GET /echo HTTP/1.1\r\nHost: reviews-alias\r\n\r\n")
        server_spans = await server_side.exporters.wait_spans(2)
        client = (await client_side.exporters.wait_spans(1))[0]
    assert "x-envoy-decorator-operation" not in _seen(via_mesh.body)  # removed before the app
    assert "x-envoy-decorator-operation" not in _seen(direct.body)
    assert client.name == REVIEWS_OPERATION
    assert [span.name for span in server_spans] == [REVIEWS_OPERATION, "reviews-alias.default.svc.cluster.local:80/*"]
    assert {span.tags["upstream_cluster"] for span in server_spans} == {"inbound|9080||"}


async def test_force_trace_is_stripped_and_client_trace_id_forces_and_tags(origin: Origin) -> None:
    unsampled = replace(TRACED, sampling_percentage=0.0)
    config = server_config(origin.port, tracing=TracingConfig(client=unsampled, server=unsampled))
    request_id = "ffffffff-0000-4000-8000-000000000000"
    async with sidecar(config) as server_side:
        forced = await request(server_side.inbound_port, (
            b"GET /echo HTTP/1.1\r\nHost: reviews\r\nx-envoy-force-trace: true\r\nx-request-id: %s\r\n\r\n"
            % request_id.encode()))
        client_forced = await request(server_side.inbound_port, (
            b"GET /echo HTTP/1.1\r\nHost: reviews\r\nx-client-trace-id: abc\r\nx-request-id: %s\r\n\r\n"
            % request_id.encode()))
        spans = await server_side.exporters.wait_spans(1)
    # A sidecar never takes a request for internal, so x-envoy-force-trace is removed and not honoured.
    assert "x-envoy-force-trace" not in _seen(forced.body)
    assert _seen(forced.body)["x-b3-sampled"] == "0"
    seen = _seen(client_forced.body)
    assert seen["x-b3-sampled"] == "1" and seen["x-client-trace-id"] == "abc"
    assert seen["x-request-id"] == "ffffffff-0000-b000-8000-000000000000"  # client-forced, packed for the next hops
    assert len(spans) == 1
    assert spans[0].tags["guid:x-client-trace-id"] == "abc"
    assert spans[0].tags["guid:x-request-id"] == seen["x-request-id"]


async def test_under_use_b3_an_apps_own_w3c_and_jaeger_headers_arrive_as_sent(origin: Origin) -> None:
    traceparent = f"00-{TRACE}-{SPAN}-01"
    async with sidecar(server_config(origin.port)) as server_side:
        response = await request(server_side.inbound_port, (
            b"GET /echo HTTP/1.1\r\nHost: reviews\r\ntraceparent: %s\r\ntracestate: k=v\r\n"
            b"uber-trace-id: %s:%s:0:1\r\n\r\n" % (traceparent.encode(), TRACE.encode(), SPAN.encode())))
        span = (await server_side.exporters.wait_spans(1))[0]
    seen = _seen(response.body)
    assert (seen["traceparent"], seen["tracestate"]) == (traceparent, "k=v")
    assert seen["uber-trace-id"] == f"{TRACE}:{SPAN}:0:1"
    assert span.trace_id != TRACE and span.parent_id is None  # the zipkin tracer reads B3 only
    assert seen["x-b3-spanid"] == span.id
