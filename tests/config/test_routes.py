"""The route-table part of the proxy config document: parse, dump, errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from tracemesh_sidecar.config import ConfigError, dump_proxy_config, parse_proxy_config
from tracemesh_sidecar.config.routes import StringMatch

NODE = {"podName": "istio-ingressgateway-1", "namespace": "istio-system", "canonicalService": "istio-ingressgateway"}


def gateway_document() -> dict[str, Any]:
    return {
        "node": dict(NODE),
        "proxyType": "router",
        "gateway": {"listeners": [{"address": "0.0.0.0:8080", "port": 80, "routeTable": "http.80"}]},
        "routeTables": [{"name": "http.80", "virtualHosts": [{
            "name": "default/bookinfo", "domains": ["*"],
            "routes": [{
                "name": "",
                "match": [{"uri": {"exact": "/productpage"}}, {"uri": {"prefix": "/static"}},
                          {"uri": {"regex": "/api/v[0-9]+/.*"}, "headers": {"End-User": {"exact": "jason"}},
                           "method": {"exact": "GET"}}],
                "decorator": "productpage.default.svc.cluster.local:9080/productpage",
                "destinations": [{"host": "productpage.default.svc.cluster.local", "port": 9080, "subset": "v1"}],
                "rewriteUri": "/",
                "timeout": "10s",
                "retries": {"attempts": 2, "perTryTimeout": "2s", "retryOn": "connect-failure,5xx,503"},
            }],
        }]}],
        "outbound": {"services": [{"host": "productpage.default.svc.cluster.local", "port": 9080,
                                   "endpoints": ["10.0.0.5:9080"],
                                   "subsets": [{"name": "v1", "endpoints": ["10.0.0.5:9080"]}]}]},
    }


def test_gateway_document_reads_and_dumps_back_to_the_same_config() -> None:
    config = parse_proxy_config(gateway_document())
    assert config.proxy_type == "router"
    assert config.gateway is not None and config.gateway.listeners[0].route_table == "http.80"
    route = config.route_tables[0].virtual_hosts[0].routes[0]
    assert route.destinations[0].weight == 100  # a single destination may omit its weight
    assert route.match[2].headers == (("end-user", StringMatch("exact", "jason")),)
    assert route.retries is not None and route.retries.retriable_status_codes == frozenset({503})
    assert route.retries.conditions == frozenset({"connect-failure", "5xx"})
    assert route.timeout_s == 10.0
    assert config.outbound.services[0].subset("v1") is not None
    assert parse_proxy_config(dump_proxy_config(config)) == config


def test_sidecar_documents_without_routes_dump_without_route_keys() -> None:
    document = dump_proxy_config(parse_proxy_config({"node": dict(NODE)}))
    assert "routeTables" not in document and "proxyType" not in document and "gateway" not in document


@pytest.mark.parametrize(("edit", "field"), [
    (lambda d: d.pop("gateway"), "gateway"),
    (lambda d: d["gateway"]["listeners"][0].update(routeTable="http.81"), "gateway.listeners[0].routeTable"),
    (lambda d: d["routeTables"][0]["virtualHosts"][0]["routes"][0]["destinations"].append(
        {"host": "x", "port": 1, "weight": 10}), "routeTables[0].virtualHosts[0].routes[0].destinations"),
    (lambda d: d["routeTables"][0]["virtualHosts"][0]["routes"][0]["match"][0]["uri"].update(prefix="/a"),
     "routeTables[0].virtualHosts[0].routes[0].match[0].uri"),
    (lambda d: d["routeTables"][0]["virtualHosts"][0]["routes"][0]["match"][2]["uri"].update(regex="(["),
     "routeTables[0].virtualHosts[0].routes[0].match[2].uri.regex"),
    (lambda d: d["routeTables"][0]["virtualHosts"][0]["routes"][0]["retries"].update(retryOn="sometimes"),
     "routeTables[0].virtualHosts[0].routes[0].retries.retryOn"),
    (lambda d: d["routeTables"][0]["virtualHosts"][0].update(domains=[]), "routeTables[0].virtualHosts[0].domains"),
    (lambda d: d["routeTables"].append(d["routeTables"][0]), "routeTables"),
    (lambda d: d.update(proxyType="waypoint"), "proxyType"),
])
def test_bad_route_documents_name_the_field(edit: Any, field: str) -> None:
    document = gateway_document()
    edit(document)
    with pytest.raises(ConfigError) as error:
        parse_proxy_config(document)
    assert error.value.field == field


def test_a_sidecar_may_not_carry_gateway_listeners() -> None:
    document = gateway_document()
    document["proxyType"] = "sidecar"
    with pytest.raises(ConfigError) as error:
        parse_proxy_config(document)
    assert error.value.field == "gateway"
