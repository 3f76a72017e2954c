"""The gateway (`proxyType: router`) and route tables through real sockets.

Followed: Envoy's router (weighted clusters, prefix rewrite, route timeout, retry policy and URX, the
upstream span `router <cluster> egress` with Istio's `;` stat-name delimiter), its connection manager
with use_remote_address (x-forwarded-for, x-forwarded-proto, x-envoy-internal), and Istio's
tests/integration/telemetry/tracing/tracing.go WantOtelIngressTraceRoot for the trace shape.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from proxy_harness import (
    TRACED,
    ZIPKIN,
    Origin,
    RawOrigin,
    client_config,
    ok,
    read_request_head,
    request,
    server_config,
    sidecar,
)

from tracemesh_sidecar.cli import serve
from tracemesh_sidecar.config import dump_proxy_config
from tracemesh_sidecar.config.model import (
    Listeners,
    NodeIdentity,
    OutboundConfig,
    ProxyConfig,
    ServiceEntry,
    TracingConfig,
)
from tracemesh_sidecar.config.routes import (
    GatewayConfig,
    GatewayListener,
    RetryPolicy,
    Route,
    RouteMatch,
    RouteTable,
    ServiceSubset,
    StringMatch,
    VirtualHost,
    WeightedDestination,
)
from tracemesh_sidecar.discovery import bootstrap_config
from tracemesh_sidecar.proxy.listeners import listener_specs
from tracemesh_sidecar.proxy.termination import DrainPlan

REVIEWS = "reviews.default.svc.cluster.local"
DECORATOR = f"{REVIEWS}:9080/echo"


def route(**changes: object) -> Route:
    base = Route(name="", match=(RouteMatch(uri=StringMatch("prefix", "/echo")),), decorator=DECORATOR,
                 destinations=(WeightedDestination(REVIEWS, 9080),))
    return replace(base, **changes)  # type: ignore[arg-type]


def gateway_config(endpoints: Sequence[str], routes: Sequence[Route] = (), domains: Sequence[str] = ("*",),
                   subsets: Sequence[ServiceSubset] = ()) -> ProxyConfig:
    """istio-ingressgateway: one listener serving route table http.80, reviews at `endpoints`."""
    return ProxyConfig(
        version="1",
        node=NodeIdentity(pod_name="istio-ingressgateway-1", namespace="istio-system", pod_ip="127.0.0.1",
                          canonical_service="istio-ingressgateway"),
        proxy_type="router",
        listeners=Listeners(outbound=None, inbound=None, admin="127.0.0.1:0", health=None, prometheus=None),
        gateway=GatewayConfig((GatewayListener("127.0.0.1:0", 80, "http.80"),)),
        route_tables=(RouteTable("http.80", (VirtualHost("default/bookinfo", tuple(domains),
                                                         tuple(routes) or (route(),)),)),),
        outbound=OutboundConfig(services=(ServiceEntry(REVIEWS, 9080, tuple(endpoints), subsets=tuple(subsets)),)),
        tracing=TracingConfig(client=TRACED, server=TRACED),
        providers=(ZIPKIN,),
    )


def _seen(body: bytes) -> dict[str, str]:
    return {key.lower(): value for key, value in json.loads(body)["headers"]}


def _get(path: str, host: str = "bookinfo.example.com", extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path.encode(), host.encode(), extra)


async def test_a_request_through_the_gateway_is_traced_as_istios_ingress(origin: Origin) -> None:
    async with sidecar(server_config(origin.port)) as server_side, \
            sidecar(gateway_config([f"127.0.0.1:{server_side.inbound_port}"])) as gateway:
        response = await request(gateway.runtime.listener_port("gateway"), _get("/echo?x=1"))
        upstream, root = await gateway.exporters.wait_spans(2)  # the upstream span ends first
        server = (await server_side.exporters.wait_spans(1))[0]
    assert response.status == 200
    assert (upstream.name, upstream.kind) == (f"router outbound|9080||{REVIEWS}; egress", "CLIENT")
    assert (root.name, root.kind, root.parent_id) == (DECORATOR, "SERVER", None)
    assert upstream.parent_id == root.id and server.parent_id == upstream.id
    assert {root.trace_id, upstream.trace_id} == {server.trace_id}
    assert root.local_endpoint.service_name == "istio-ingressgateway.istio-system"
    assert upstream.local_endpoint.service_name == "istio-ingressgateway.istio-system"
    assert root.tags["node_id"].startswith("router~127.0.0.1~istio-ingressgateway-1.istio-system~")
    # The gateway's route decorator names the next hop's SERVER span, and is removed before the app.
    assert server.name == DECORATOR
    assert "x-envoy-decorator-operation" not in _seen(response.body)


async def test_the_gateway_sets_envoys_forwarding_headers(origin: Origin) -> None:
    async with sidecar(gateway_config([f"127.0.0.1:{origin.port}"])) as gateway:
        response = await request(gateway.runtime.listener_port("gateway"), _get(
            "/echo", extra=b"x-forwarded-for: 203.0.113.9\r\nx-forwarded-proto: https\r\n"
                           b"x-envoy-decorator-operation: forged\r\n"))
        root = (await gateway.exporters.wait_spans(2))[1]
    seen = _seen(response.body)
    assert seen["x-forwarded-for"] == "203.0.113.9,127.0.0.1"  # the peer appended
    assert seen["x-forwarded-proto"] == "http"  # no trusted hop before: overwritten
    assert seen["x-envoy-internal"] == "true"  # a loopback peer is internal
    assert "x-envoy-external-address" not in seen
    assert seen["x-envoy-decorator-operation"] == DECORATOR
    assert root.name == DECORATOR  # a client's decorator header never names the gateway's span


async def test_no_matching_route_or_host_is_404_nr(origin: Origin) -> None:
    config = gateway_config([f"127.0.0.1:{origin.port}"], domains=("bookinfo.example.com",))
    async with sidecar(config) as gateway:
        port = gateway.runtime.listener_port("gateway")
        no_route = await request(port, _get("/nothing"))
        no_host = await request(port, _get("/echo", host="other.example.com"))
        with_port = await request(port, _get("/echo", host="BookInfo.example.com:80"))
        spans = await gateway.exporters.wait_spans(4)
    assert (no_route.status, no_host.status, with_port.status) == (404, 404, 200)
    assert [span.tags["response_flags"] for span in spans[:2]] == ["NR", "NR"]
    assert origin.requests and len(origin.requests) == 1


async def _status_sequence(statuses: list[int], seen: list[bytes], reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
    for _ in range(10):
        seen.append(await read_request_head(reader))
        status = statuses.pop(0) if statuses else 200
        writer.write(b"HTTP/1.1 %d X\r\ncontent-length: 2\r\n\r\nok" % status)
        await writer.drain()


async def test_a_retriable_status_is_retried_and_exhaustion_is_urx() -> None:
    seen: list[bytes] = []
    statuses = [503, 200, 503, 503, 503]
    retries = RetryPolicy(attempts=2, retry_on=("connect-failure", "retriable-status-codes", "503"))
    async with RawOrigin(lambda r, w: _status_sequence(statuses, seen, r, w)) as origin, \
            sidecar(gateway_config([f"127.0.0.1:{origin.port}"], routes=(route(retries=retries),))) as gateway:
        port = gateway.runtime.listener_port("gateway")
        recovered = await request(port, _get("/echo"))
        exhausted = await request(port, _get("/echo"))
        spans = [span for span in await gateway.exporters.wait_spans(4) if span.kind == "SERVER"]
    assert (recovered.status, exhausted.status) == (200, 503)
    assert len(seen) == 5  # 2 tries, then 1 + 2 retries
    assert gateway.stats.get("upstream.rq_retry") == 3
    assert [span.tags["response_flags"] for span in spans] == ["-", "URX"]


async def test_a_connect_failure_is_retried_on_the_next_endpoint(origin: Origin) -> None:
    dead = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    dead_port = dead.sockets[0].getsockname()[1]
    dead.close()
    await dead.wait_closed()
    retries = RetryPolicy(attempts=1, retry_on=("connect-failure",))
    config = gateway_config([f"127.0.0.1:{dead_port}", f"127.0.0.1:{origin.port}"], routes=(route(retries=retries),))
    async with sidecar(config) as gateway:
        response = await request(gateway.runtime.listener_port("gateway"), _get("/echo"))
    assert response.status == 200


async def test_the_route_timeout_answers_504_ut_and_rewrite_replaces_the_prefix(origin: Origin) -> None:
    routes = (route(match=(RouteMatch(uri=StringMatch("prefix", "/late")),), rewrite_uri="/slow", timeout_s=0.2),
              route(match=(RouteMatch(uri=StringMatch("prefix", "/api/")),), rewrite_uri="/echo/"))
    async with sidecar(gateway_config([f"127.0.0.1:{origin.port}"], routes=routes)) as gateway:
        port = gateway.runtime.listener_port("gateway")
        late = await request(port, _get("/late?delay=3"))
        rewritten = await request(port, _get("/api/v1/x?q=1"))
    assert late.status == 504 and late.body == b"upstream request timeout"
    assert json.loads(rewritten.body)["path"] == "/echo/v1/x?q=1"


async def _named(name: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    for _ in range(50):
        await read_request_head(reader)
        writer.write(ok(name))
        await writer.drain()


async def test_a_sidecar_routes_a_mesh_virtual_service_to_its_subset() -> None:
    async with RawOrigin(lambda r, w: _named(b"v1", r, w)) as v1, RawOrigin(lambda r, w: _named(b"v2", r, w)) as v2:
        endpoints = (f"127.0.0.1:{v1.port}", f"127.0.0.1:{v2.port}")
        service = ServiceEntry(REVIEWS, 9080, endpoints, subsets=(ServiceSubset("v1", endpoints[:1]),
                                                                  ServiceSubset("v2", endpoints[1:])))
        table = RouteTable("outbound", (VirtualHost("default/reviews", (REVIEWS,), (Route(
            name="", match=(), decorator=None,
            destinations=(WeightedDestination(REVIEWS, 9080, "v1", 100), WeightedDestination(REVIEWS, 9080, "v2", 0)),
        ),)),))
        config = client_config([], outbound=OutboundConfig(services=(service,)), route_tables=(table,))
        async with sidecar(config) as client_side:
            answers = [await request(client_side.outbound_port,
                                     b"GET http://reviews:9080/ HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
                       for _ in range(20)]
            spans = await client_side.exporters.wait_spans(20)
    assert [answer.body for answer in answers] == [b"v1"] * 20
    assert {span.tags["upstream_cluster"] for span in spans} == {f"outbound|9080|v1|{REVIEWS}"}
    assert {span.name for span in spans} == {f"{REVIEWS}:9080/*"}


def test_a_router_starts_with_no_listener_but_its_gateways_until_the_push() -> None:
    """`tracemesh proxy router --discovery ... --bootstrap-env`: no capture listeners, no gateway listener yet."""
    environ = {"POD_NAME": "istio-ingressgateway-1", "POD_NAMESPACE": "istio-system",
               "TRACEMESH_CANONICAL_SERVICE": "istio-ingressgateway"}
    config = bootstrap_config(environ, "tracemesh-discovery.istio-system.svc:15010", "router")
    assert config.proxy_type == "router" and config.gateway == GatewayConfig(())
    assert listener_specs(config) == []
    pushed = gateway_config(["127.0.0.1:9"])
    assert [spec.kind for spec in listener_specs(replace(pushed, listeners=Listeners()))] == ["gateway"]


async def test_the_proxy_refuses_a_config_of_the_other_proxy_type(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(dump_proxy_config(gateway_config(["127.0.0.1:9"]))))
    assert await serve(str(path), DrainPlan(0.0, False, 0.0), mode="sidecar") == 2
