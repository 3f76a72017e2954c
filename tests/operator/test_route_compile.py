"""Bookinfo's networking files (istio/istio samples, verbatim) compile to the route tables istiod builds for them:
gateway listeners and `http.<port>` tables (pilot/pkg/model/gateway.go), one route per match with route.go's
decorators, mesh VirtualServices in the callers' `outbound` table, DestinationRule subsets, and the Gateway API
translated as conversion.go does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tracemesh_operator.compiler.compile import compile_telemetry
from tracemesh_operator.compiler.gateway_api import GATEWAY_NAME_LABEL, read_http_route, read_k8s_gateway
from tracemesh_operator.compiler.model import Problem
from tracemesh_operator.compiler.networking import (
    DEFAULT_RETRIES,
    GatewayRules,
    RoutingRules,
    SubsetRules,
    read_destination_rule,
    read_gateway,
    read_virtual_service,
)
from tracemesh_operator.compiler.route_tables import (
    compile_gateway_routes,
    compile_sidecar_routes,
    unresolved_destinations,
)
from tracemesh_operator.compiler.services import service_registry
from tracemesh_sidecar.config import RetryPolicy, RouteMatch, ServiceEntry, StringMatch, WeightedDestination

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "bookinfo"
ECHO_TESTDATA = (Path(__file__).resolve().parents[1] / "fixtures" / "istio" / "tests" / "integration" / "telemetry"
                 / "tracing" / "otelcollector" / "testdata")
INGRESS_LABELS = {"app": "istio-ingressgateway", "istio": "ingressgateway"}
INGRESS_TARGET_PORTS = {80: 8080, 443: 8443}  # manifests/ingressgateway.yaml's Service
PRODUCTPAGE = "productpage.default.svc.cluster.local"
REVIEWS = "reviews.default.svc.cluster.local"
REGISTRY = tuple(ServiceEntry(f"{name}.default.svc.cluster.local", 9080, ("10.0.0.1:9080",))
                 for name in ("details", "productpage", "ratings", "reviews"))


def sample(path: str, namespace: str = "default") -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all((SAMPLES / path).read_text()) if doc]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs


def read(doc: dict[str, Any]) -> Any:
    reader = {"Gateway": read_gateway, "VirtualService": read_virtual_service,
              "DestinationRule": read_destination_rule, "HTTPRoute": read_http_route}[doc["kind"]]
    if doc["apiVersion"].startswith("gateway.networking.k8s.io") and doc["kind"] == "Gateway":
        reader = read_k8s_gateway
    result = reader(doc)
    assert not isinstance(result, Problem), result
    return result


def istio_bookinfo() -> tuple[GatewayRules, RoutingRules]:
    gateway, virtual_service = (read(doc) for doc in sample("networking/bookinfo-gateway.yaml"))
    return gateway, virtual_service


def uris(route_match: tuple[RouteMatch, ...]) -> list[tuple[str, str]]:
    return [(m.uri.kind, m.uri.value) for m in route_match if m.uri is not None]


def test_bookinfo_gateway_yaml_compiles_to_istios_gateway_routes() -> None:
    gateway, virtual_service = istio_bookinfo()
    compiled = compile_gateway_routes("istio-system", INGRESS_LABELS, INGRESS_TARGET_PORTS, [gateway],
                                      [virtual_service], REGISTRY)
    # The sample's server port 8080 is no port of the Service: it binds as written (resolvePorts).
    assert compiled.gateway is not None
    assert [(lst.address, lst.port, lst.route_table) for lst in compiled.gateway.listeners] == [
        ("0.0.0.0:8080", 8080, "http.8080")]
    [table] = compiled.route_tables
    [virtual_host] = table.virtual_hosts
    assert (table.name, virtual_host.name, virtual_host.domains) == ("http.8080", "default/bookinfo", ("*",))
    # One route per match, in order, each with its decorator (route.go GetRouteOperation).
    assert [(uris(route.match), route.decorator) for route in virtual_host.routes] == [
        ([("exact", "/productpage")], f"{PRODUCTPAGE}:9080/productpage"),
        ([("prefix", "/static")], f"{PRODUCTPAGE}:9080/static*"),
        ([("exact", "/login")], f"{PRODUCTPAGE}:9080/login"),
        ([("exact", "/logout")], f"{PRODUCTPAGE}:9080/logout"),
        ([("prefix", "/api/v1/products")], f"{PRODUCTPAGE}:9080/api/v1/products*"),
    ]
    for route in virtual_host.routes:
        assert route.destinations == (WeightedDestination(PRODUCTPAGE, 9080, None, 100),)
        assert route.retries == DEFAULT_RETRIES  # retry.go's default policy: 2 attempts
        assert route.timeout_s is None
    # The gateway's VirtualService does not route in sidecars.
    assert compile_sidecar_routes([virtual_service], REGISTRY).route_tables == ()


def test_a_server_on_a_service_port_binds_its_target_port() -> None:
    _, virtual_service = istio_bookinfo()
    doc = sample("networking/bookinfo-gateway.yaml")[0]
    doc["spec"]["servers"][0]["port"]["number"] = 80
    compiled = compile_gateway_routes("istio-system", INGRESS_LABELS, INGRESS_TARGET_PORTS, [read(doc)],
                                      [virtual_service], REGISTRY)
    assert compiled.gateway is not None
    assert [(lst.address, lst.port, lst.route_table) for lst in compiled.gateway.listeners] == [
        ("0.0.0.0:8080", 80, "http.8080")]


def test_a_gateway_selects_only_pods_with_its_labels() -> None:
    gateway, virtual_service = istio_bookinfo()
    compiled = compile_gateway_routes("istio-system", {"istio": "egressgateway"}, {}, [gateway], [virtual_service],
                                      REGISTRY)
    assert compiled.gateway is not None and compiled.gateway.listeners == () and compiled.route_tables == ()


def test_the_gateway_api_bookinfo_gateway_compiles_to_the_same_routes() -> None:
    gateway, route = (read(doc) for doc in sample("gateway-api/bookinfo-gateway.yaml"))
    compiled = compile_gateway_routes("default", {GATEWAY_NAME_LABEL: "bookinfo-gateway"}, {}, [gateway], [route],
                                      REGISTRY)
    assert compiled.gateway is not None
    assert [(lst.address, lst.port, lst.route_table) for lst in compiled.gateway.listeners] == [
        ("0.0.0.0:80", 80, "http.80")]
    [virtual_host] = compiled.route_tables[0].virtual_hosts
    istio_gateway, virtual_service = istio_bookinfo()
    [istio_table] = compile_gateway_routes("istio-system", INGRESS_LABELS, INGRESS_TARGET_PORTS, [istio_gateway],
                                           [virtual_service], REGISTRY).route_tables
    [istio_host] = istio_table.virtual_hosts
    assert (virtual_host.name, virtual_host.domains) == (istio_host.name, istio_host.domains)
    assert [r.destinations for r in virtual_host.routes] == [r.destinations for r in istio_host.routes]
    # Exact matches are the same routes; a PathPrefix is Envoy's path-separated prefix in Istio, whose decorator
    # route.go writes as `/*`: /static matches /static and /static/..., not /staticx.
    for ours, theirs in zip(virtual_host.routes, istio_host.routes, strict=True):
        assert ours.retries == theirs.retries
        if theirs.match[0].uri == StringMatch("exact", theirs.match[0].uri.value if theirs.match[0].uri else ""):
            assert (ours.match, ours.decorator) == (theirs.match, theirs.decorator)
        else:
            assert ours.decorator == f"{PRODUCTPAGE}:9080/*"
            assert ours.match[0].uri is not None and ours.match[0].uri.kind == "regex"
    static = virtual_host.routes[1].match[0].uri
    assert static is not None and [static.matches(path) for path in ("/static", "/static/a.css", "/staticx")] == [
        True, True, False]


def test_a_gateway_api_gateway_serves_only_its_own_pods_and_namespace() -> None:
    gateway, route = (read(doc) for doc in sample("gateway-api/bookinfo-gateway.yaml"))
    elsewhere = compile_gateway_routes("other", {GATEWAY_NAME_LABEL: "bookinfo-gateway"}, {}, [gateway], [route],
                                       REGISTRY)
    assert elsewhere.gateway is not None and elsewhere.gateway.listeners == ()
    # allowedRoutes From: Same: an HTTPRoute of another namespace does not attach.
    other_route = read_http_route(dict(sample("gateway-api/bookinfo-gateway.yaml", "other")[1], spec={
        "parentRefs": [{"name": "bookinfo-gateway", "namespace": "default"}],
        "rules": [{"backendRefs": [{"name": "productpage", "port": 9080}]}]}))
    assert isinstance(other_route, RoutingRules)
    compiled = compile_gateway_routes("default", {GATEWAY_NAME_LABEL: "bookinfo-gateway"}, {}, [gateway],
                                      [other_route], REGISTRY)
    assert compiled.route_tables[0].virtual_hosts == ()


def test_virtual_service_all_v1_routes_every_service_to_v1_in_the_callers_sidecar() -> None:
    rules = [read(doc) for doc in sample("networking/virtual-service-all-v1.yaml")]
    [table] = compile_sidecar_routes(rules, REGISTRY).route_tables
    assert table.name == "outbound"
    by_name = {vh.name: vh for vh in table.virtual_hosts}
    assert sorted(by_name) == ["default/details", "default/productpage", "default/ratings", "default/reviews"]
    reviews = by_name["default/reviews"]
    assert reviews.domains == (REVIEWS,)  # the short host `reviews`, in the VirtualService's namespace
    [route] = reviews.routes
    # No match: every request; the destination port is the Service's only one.
    assert route.match == () and route.decorator == f"{REVIEWS}:9080/*"
    assert route.destinations == (WeightedDestination(REVIEWS, 9080, "v1", 100),)


def test_weights_headers_and_the_fallback_route_of_the_reviews_samples() -> None:
    [eighty_twenty] = [read(doc) for doc in sample("networking/virtual-service-reviews-80-20.yaml")]
    [route] = compile_sidecar_routes([eighty_twenty], REGISTRY).route_tables[0].virtual_hosts[0].routes
    assert [(d.subset, d.weight) for d in route.destinations] == [("v1", 80), ("v2", 20)]
    # Several destinations: the decorator names the VirtualService and the port (route.go).
    assert route.decorator == "reviews:9080/*"
    [jason] = [read(doc) for doc in sample("networking/virtual-service-reviews-jason-v2-v3.yaml")]
    first, fallback = compile_sidecar_routes([jason], REGISTRY).route_tables[0].virtual_hosts[0].routes
    assert first.match == (RouteMatch(headers=(("end-user", StringMatch("exact", "jason")),)),)
    assert (first.destinations[0].subset, fallback.match, fallback.destinations[0].subset) == ("v2", (), "v3")


@pytest.mark.parametrize(("weights", "expected"), [([90, 10], [90, 10]), ([1, 1], [50, 50]), ([1, 1, 1], [34, 33, 33]),
                                                   ([None, None], [50, 50])])
def test_http_route_weights_become_percentages(weights: list[int | None], expected: list[int]) -> None:
    backends = [{"name": f"reviews-v{i + 1}", "port": 9080} | ({"weight": w} if w is not None else {})
                for i, w in enumerate(weights)]
    route = read_http_route({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                             "metadata": {"name": "reviews", "namespace": "default"},
                             "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": backends}]}})
    assert isinstance(route, RoutingRules)
    gateway = read_k8s_gateway({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                                "metadata": {"name": "gw", "namespace": "default"},
                                "spec": {"gatewayClassName": "istio",
                                         "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}})
    assert isinstance(gateway, GatewayRules)
    compiled = compile_gateway_routes("default", {GATEWAY_NAME_LABEL: "gw"}, {}, [gateway], [route], REGISTRY)
    [route_out] = compiled.route_tables[0].virtual_hosts[0].routes
    assert [d.weight for d in route_out.destinations] == expected


def _virtual_service(http: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {"hosts": ["reviews"], "http": http, **spec}}


def test_rewrite_timeout_and_retries_as_istio_converts_them() -> None:
    rules = read(_virtual_service([{
        "match": [{"uri": {"prefix": "/v1"}, "method": {"exact": "GET"}}], "rewrite": {"uri": "/"},
        "timeout": "10s", "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx,503"},
        "route": [{"destination": {"host": "reviews", "port": {"number": 9080}}}]}]))
    [route] = compile_sidecar_routes([rules], REGISTRY).route_tables[0].virtual_hosts[0].routes
    assert (route.rewrite_uri, route.timeout_s) == ("/", 10.0)
    assert route.match[0].method == StringMatch("exact", "GET")
    # retry.go: status codes in retryOn add retriable-status-codes.
    assert route.retries == RetryPolicy(3, 2.0, ("5xx", "503", "retriable-status-codes"))
    disabled = read(_virtual_service([{"retries": {"attempts": 0},
                                       "route": [{"destination": {"host": "reviews"}}]}]))
    assert disabled.http[0].retries is None


def test_an_unknown_retry_condition_rejects_the_virtual_service() -> None:
    problem = read_virtual_service(_virtual_service([{"retries": {"attempts": 1, "retryOn": "sometimes"}, "route": [
        {"destination": {"host": "reviews"}}]}]))
    assert isinstance(problem, Problem)
    assert (problem.field, problem.reason) == ("spec.http[0].retries.retryOn", "InvalidVirtualService")
    assert "sometimes" in problem.problem and "5xx" in problem.fix


def test_what_is_accepted_but_not_acted_on_is_reported() -> None:
    [fault] = [read(doc) for doc in sample("networking/fault-injection-details-v1.yaml")
               if doc["kind"] == "VirtualService"]
    assert [(n.field, n.reason) for n in fault.notices] == [("spec.http[0].fault", "UnsupportedField")]
    rules = read(_virtual_service([{"mirror": {"host": "reviews"}, "corsPolicy": {"allowOrigins": []},
                                    "route": [{"destination": {"host": "reviews"}, "headers": {"request": {}}}],
                                    "match": [{"queryParams": {"a": {"exact": "b"}}}]}],
                                  tcp=[{"route": [{"destination": {"host": "reviews"}}]}]))
    fields = {notice.field for notice in rules.notices}
    assert fields == {"spec.http[0].mirror", "spec.http[0].corsPolicy", "spec.http[0].route[0].headers",
                      "spec.http[0].match[0].queryParams", "spec.tcp"}
    echo = yaml.safe_load_all((ECHO_TESTDATA / "echo-gateway.yaml").read_text())
    gateway = read_gateway(next(doc for doc in echo if doc and doc["kind"] == "Gateway"))
    assert isinstance(gateway, GatewayRules)
    assert [server.port for server in gateway.servers] == [80]  # the TCP server is reported, not served
    assert [notice.field for notice in gateway.notices] == ["spec.servers[1].port.protocol"]


def test_a_destination_without_a_port_on_a_service_of_several_ports_is_reported() -> None:
    registry = (*REGISTRY, ServiceEntry(REVIEWS, 9090, ()))
    rules = read(_virtual_service([{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]))
    [problem] = unresolved_destinations(rules, registry)
    assert (problem.field, problem.reason) == ("spec.http[0].route[0].destination.port", "UnresolvedDestination")
    assert compile_sidecar_routes([rules], registry).route_tables == ()


def test_destination_rule_subsets_select_endpoints_by_their_pods_labels() -> None:
    rules = {rule.host: rule.subsets for rule in map(read, sample("networking/destination-rule-all.yaml"))
             if isinstance(rule, SubsetRules)}
    service = {"metadata": {"name": "reviews", "namespace": "default"},
               "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 9080}]}}
    endpoint_slice = {"addressType": "IPv4", "ports": [{"name": "http", "port": 9080}], "endpoints": [
        {"addresses": [f"10.0.0.{i}"], "targetRef": {"kind": "Pod", "namespace": "default", "name": f"reviews-v{i}"}}
        for i in (1, 2, 3)]}
    pods = {f"default/reviews-v{i}": {"app": "reviews", "version": f"v{i}"} for i in (1, 2, 3)}
    [entry] = service_registry([service], {"default/reviews": [endpoint_slice]}, subsets=rules, pod_labels=pods)
    assert [(subset.name, subset.endpoints) for subset in entry.subsets] == [
        ("v1", ("10.0.0.1:9080",)), ("v2", ("10.0.0.2:9080",)), ("v3", ("10.0.0.3:9080",))]


def test_a_telemetry_targeting_a_gateway_applies_to_that_gateways_pods_only() -> None:
    mesh = {"extensionProviders": [{"name": "zipkin", "zipkin": {"service": "zipkin.istio-system", "port": 9411}}],
            "defaultProviders": {"tracing": ["zipkin"]}}
    telemetry = {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                 "metadata": {"name": "gateway", "namespace": "default"},
                 "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                          "name": "bookinfo-gateway"}],
                          "tracing": [{"randomSamplingPercentage": 42}]}}

    def sampling(labels: dict[str, str]) -> float | None:
        return compile_telemetry(mesh, [telemetry], "default", labels).tracing.server.sampling_percentage

    assert sampling({GATEWAY_NAME_LABEL: "bookinfo-gateway"}) == 42.0
    assert sampling({GATEWAY_NAME_LABEL: "other"}) != 42.0
    assert sampling({"app": "productpage"}) != 42.0  # policyattachment.go: a targetRef never selects a sidecar


def test_an_endpoint_without_a_target_ref_joins_subsets_by_its_pods_ip() -> None:
    service = {"metadata": {"name": "reviews", "namespace": "default"},
               "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 9080}]}}
    endpoint_slice = {"addressType": "IPv4", "ports": [{"name": "http", "port": 9080}],
                      "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]}
    [entry] = service_registry([service], {"default/reviews": [endpoint_slice]},
                               subsets={REVIEWS: (("v2", {"version": "v2"}),)},
                               pod_labels={"10.0.0.1": {"version": "v1"}, "10.0.0.2": {"version": "v2"}})
    assert entry.subsets[0].endpoints == ("10.0.0.2:9080",)


def test_virtual_services_for_one_host_on_a_gateway_are_merged_oldest_first() -> None:
    gateway, bookinfo = istio_bookinfo()
    doc = sample("networking/bookinfo-gateway.yaml")[1]
    doc["metadata"].update(name="reviews-direct", creationTimestamp="2027-01-01T00:00:00Z")
    doc["spec"]["http"] = [{"match": [{"uri": {"prefix": "/reviews"}}],
                            "route": [{"destination": {"host": "reviews", "port": {"number": 9080}}}]}]
    later = read(doc)
    [table] = compile_gateway_routes("istio-system", INGRESS_LABELS, {}, [gateway], [bookinfo, later],
                                     REGISTRY).route_tables
    [virtual_host] = table.virtual_hosts
    assert virtual_host.name == "default/bookinfo"
    assert [route.decorator for route in virtual_host.routes][-2:] == [
        f"{PRODUCTPAGE}:9080/api/v1/products*", f"{REVIEWS}:9080/reviews*"]
