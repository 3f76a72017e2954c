"""Routing carries each Service port's protocol to the upstream's HTTP version (`Destination.http2`), as Istio's
cluster_builder.go setUpstreamProtocol: HTTP2/GRPC/GRPC-Web HTTP/2, HTTP HTTP/1.1, undeclared the downstream's."""

from __future__ import annotations

from dataclasses import replace

import pytest
from proxy_harness import client_config, server_config

from tracemesh_sidecar.config.model import InboundPort, OutboundConfig, ProxyConfig, ServiceEntry
from tracemesh_sidecar.config.routes import ServiceSubset, WeightedDestination
from tracemesh_sidecar.proxy.routing import InboundRouter, OutboundRouter

REVIEWS = "reviews.default.svc.cluster.local"
VIP = "10.96.0.7"


def _client(protocol: str) -> ProxyConfig:
    entry = ServiceEntry(host=REVIEWS, port=9080, endpoints=("10.0.0.1:9080",), addresses=(VIP,),
                         subsets=(ServiceSubset("v1", ("10.0.0.1:9080",)),), protocol=protocol)
    return client_config([], outbound=OutboundConfig(services=(entry,)))


@pytest.mark.parametrize(("protocol", "http2"), [
    ("GRPC", True), ("HTTP2", True), ("GRPC-Web", True), ("HTTP", False), ("HTTP_PROXY", False),
    ("", None), ("TCP", None),
])
def test_every_outbound_route_to_a_service_port_carries_its_upstream_http_version(
        protocol: str, http2: bool | None) -> None:
    router = OutboundRouter(_client(protocol))
    by_name = router.by_authority("reviews:9080")
    by_address = router.transparent("reviews:9080", (VIP, 9080))
    whole, _ = router.weighted(WeightedDestination(REVIEWS, 9080))
    subset, _ = router.weighted(WeightedDestination(REVIEWS, 9080, "v1"))
    assert whole is not None and subset is not None
    destinations = [by_name, by_address, whole.destination(), subset.destination()]
    assert [destination.http2 if destination else "no route" for destination in destinations] == [http2] * 4


def test_a_passthrough_has_no_service_so_the_downstream_version() -> None:
    router = OutboundRouter(_client("GRPC"))
    by_name = router.by_authority("www.example.com")
    by_address = router.transparent("reviews:9080", ("10.96.0.99", 9080))
    assert by_name is not None and by_address is not None
    assert (by_name.decorated, by_name.http2) == (False, None)
    assert (by_address.decorated, by_address.http2) == (False, None)


def test_the_inbound_port_protocol_sets_the_apps_http_version() -> None:
    base = server_config(18080)
    ports = (InboundPort(port=9080, app_port=18080, service_host=REVIEWS, protocol="GRPC"),
             InboundPort(port=9081, app_port=9081, service_host=REVIEWS, protocol="HTTP"),
             InboundPort(port=9082, app_port=9082))
    router = InboundRouter(replace(base, inbound=replace(base.inbound, ports=ports)))
    assert [router.to_app(port).http2 for port in (9080, 9081, 9082)] == [True, False, None]
    assert router.to_app(7070).http2 is None  # a port no config names: Istio's passthrough chain
