"""Route matching, weighted picks, rewrites, retry decisions and edge headers: the pure cores.

Followed: Envoy's RouteMatcher domain precedence and header/path matching (config_impl.cc),
weighted_clusters, prefix_rewrite, RetryStateImpl (retry_state_impl.cc), conn_manager_utility.cc.
"""

from __future__ import annotations

import pytest

from tracemesh_sidecar.config.routes import (
    RetryPolicy,
    Route,
    RouteMatch,
    RouteTable,
    StringMatch,
    VirtualHost,
    WeightedDestination,
)
from tracemesh_sidecar.proxy.edge import edge_headers, is_internal_address
from tracemesh_sidecar.proxy.retry import backoff_s, retries_failure, retries_response
from tracemesh_sidecar.proxy.route_table import CompiledRouteTable, first_route, pick_destination, rewrite_path

DEST = (WeightedDestination("productpage.default.svc.cluster.local", 9080),)


def _route(name: str, *matches: RouteMatch, rewrite: str | None = None) -> Route:
    return Route(name=name, match=matches, decorator=None, destinations=DEST, rewrite_uri=rewrite)


def _host(name: str, *domains: str) -> VirtualHost:
    return VirtualHost(name, domains, (_route(name),))


@pytest.mark.parametrize(("authority", "chosen"), [
    ("api.example.com", "exact"),
    ("API.Example.com:80", "exact"),  # case-insensitive; a port no domain names is tried without it
    ("api.example.com:8080", "with-port"),
    ("x.api.example.com", "longest-suffix"),
    ("x.example.com", "suffix"),
    ("www.other.org", "prefix"),
    ("elsewhere", "default"),
])
def test_virtual_hosts_are_chosen_as_envoy_chooses_them(authority: str, chosen: str) -> None:
    table = CompiledRouteTable(RouteTable("http.80", (
        _host("default", "*"), _host("suffix", "*.example.com"), _host("longest-suffix", "*.api.example.com"),
        _host("prefix", "www.*"), _host("exact", "api.example.com"), _host("with-port", "api.example.com:8080"),
    )))
    found = table.virtual_host(authority)
    assert found is not None and found.name == chosen


def test_no_default_host_means_no_virtual_host() -> None:
    assert CompiledRouteTable(RouteTable("t", (_host("a", "a.example.com"),))).virtual_host("b.example.com") is None


def test_the_first_matching_route_wins_and_alternatives_are_ored() -> None:
    jason = RouteMatch(headers=(("end-user", StringMatch("exact", "jason")),))
    routes = (
        _route("v2", jason),
        _route("api", RouteMatch(uri=StringMatch("regex", "/api/v[0-9]+/.*"), method=StringMatch("exact", "GET"))),
        _route("pages", RouteMatch(uri=StringMatch("exact", "/productpage")),
               RouteMatch(uri=StringMatch("prefix", "/static"))),
        _route("present", RouteMatch(headers=(("x-canary", StringMatch("present")),))),
    )
    host = VirtualHost("bookinfo", ("*",), routes)

    def chosen(method: str, path: str, headers: dict[str, str] | None = None) -> str | None:
        found = first_route(host, method, path, headers or {})
        return None if found is None else found.name

    assert chosen("GET", "/productpage", {"end-user": "jason"}) == "v2"
    assert chosen("GET", "/productpage?u=normal") == "pages"  # the query string is not part of the path
    assert chosen("GET", "/static/css/x.css") == "pages"
    assert chosen("GET", "/api/v1/products/0") == "api"
    assert chosen("POST", "/api/v1/products/0") is None
    assert chosen("GET", "/api/vx/products") is None  # a regex matches the whole path
    assert chosen("GET", "/other", {"x-canary": ""}) == "present"
    assert chosen("GET", "/nothing") is None


def test_weighted_destinations_follow_the_roll() -> None:
    v1, v2, v3 = (WeightedDestination("reviews", 9080, subset, weight) for subset, weight in
                  (("v1", 50), ("v2", 0), ("v3", 50)))
    route = Route(name="", match=(), decorator=None, destinations=(v1, v2, v3))
    assert [pick_destination(route, lambda total, roll=roll: roll).subset for roll in (0, 49, 50, 99)] == \
        ["v1", "v1", "v3", "v3"]


@pytest.mark.parametrize(("match", "rewrite", "path", "forwarded"), [
    (StringMatch("prefix", "/api/"), "/", "/api/v1/x?q=1", "/v1/x?q=1"),
    (StringMatch("prefix", "/api"), "/v2", "/api/x", "/v2/x"),
    (StringMatch("exact", "/productpage"), "/index.html", "/productpage?u=1", "/index.html?u=1"),
    (None, "/base/", "/x/y", "/base/x/y"),
])
def test_rewrite_replaces_the_matched_prefix_or_the_whole_path(match: StringMatch | None, rewrite: str, path: str,
                                                                forwarded: str) -> None:
    route = _route("r", RouteMatch(uri=match), rewrite=rewrite) if match else _route("r", rewrite=rewrite)
    assert rewrite_path(route, path) == forwarded


def test_retry_conditions_are_envoys() -> None:
    istio_default = RetryPolicy(2, None, ("connect-failure", "refused-stream", "unavailable", "cancelled",
                                          "retriable-status-codes"))
    assert retries_failure(istio_default, "connect-failure")
    assert not retries_failure(istio_default, "reset")
    assert not retries_response(istio_default, 503, None)  # retriable-status-codes without codes: none
    assert retries_response(istio_default, 200, "14")  # grpc-status UNAVAILABLE
    five = RetryPolicy(1, None, ("5xx",))
    assert retries_failure(five, "per-try-timeout") and retries_response(five, 500, None)
    assert not retries_response(five, 404, None)
    gateway_error = RetryPolicy(1, None, ("gateway-error",))
    assert [retries_response(gateway_error, status, None) for status in (500, 502, 503, 504)] == \
        [False, True, True, True]
    assert retries_response(RetryPolicy(1, None, ("retriable-4xx",)), 409, None)
    assert retries_response(RetryPolicy(1, None, ("retriable-status-codes", "418")), 418, None)


def test_backoff_is_jittered_below_an_exponential_cap() -> None:
    assert [backoff_s(retry, lambda low, high: high) for retry in (1, 2, 3, 4, 5)] == \
        [0.025, 0.05, 0.1, 0.2, 0.25]


def test_edge_headers_tell_internal_from_external_peers() -> None:
    internal = dict(edge_headers("10.1.2.3", {"x-forwarded-for": "1.2.3.4"}))
    assert internal == {"x-forwarded-for": "1.2.3.4,10.1.2.3", "x-forwarded-proto": "http", "x-envoy-internal": "true"}
    external = dict(edge_headers("203.0.113.9", {"x-request-id": "client-chosen"}))
    assert external["x-envoy-external-address"] == "203.0.113.9"
    assert external["x-forwarded-for"] == "203.0.113.9"
    assert external["x-request-id"] != "client-chosen"  # an edge request's id is the gateway's own
    assert [is_internal_address(a) for a in ("172.20.0.1", "192.168.1.1", "127.0.0.1", "::1", "fd00::1",
                                             "::ffff:10.0.0.1", "8.8.8.8", "2001:db8::1")] == \
        [True, True, True, True, True, True, False, False]
