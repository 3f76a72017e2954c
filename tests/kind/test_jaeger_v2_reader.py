"""The kind test's Jaeger reader against a trace shaped exactly as Jaeger v2 serves it (runs without kind).

Jaeger v2 (the addon's jaegertracing/jaeger:2.x) stores the OTLP our sidecars send and answers
/api/traces through the OpenTelemetry Collector's translator (jaeger:
internal/storage/v2/v1adapter/translator.go -> contrib pkg/translator/jaeger, whose output is
pinned by cmd/jaeger/internal/extension/jaegerquery/internal/fixture/otlp2jaeger-out.json):
process = service.name + the other resource attributes (none here), span tags = `otel.scope.name`,
then the span's attributes in order, then `span.kind`. No process tag `ip`: the pod address is the
span tag `net.host.ip` (tracemesh_sidecar.spans.otlp), which the reader must take as localEndpoint.
"""

from __future__ import annotations

from typing import Any

import pytest
from bookinfo_e2e import check_addresses

from tracemesh_collector.jaeger_json import trace_from_jaeger
from tracemesh_sidecar.spans.model import Endpoint

TRACE_ID = "5b8aa5a2d2c872e8321cf37308d69df2"
PRODUCTPAGE_IP, DETAILS_IP = "10.244.0.12", "10.244.0.7"
POD_IPS = {"productpage": {PRODUCTPAGE_IP}, "details": {DETAILS_IP}}


def string_tag(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "type": "string", "value": value}


def jaeger_v2_span(span_id: str, parent: str | None, kind: str, attributes: list[dict[str, Any]],
                   process: str) -> dict[str, Any]:
    return {
        "traceID": TRACE_ID,
        "spanID": span_id,
        "operationName": "details.default.svc.cluster.local:9080/*",
        "references": [{"refType": "CHILD_OF", "traceID": TRACE_ID, "spanID": parent}] if parent else [],
        "startTime": 1_764_590_000_000_000,
        "duration": 2_400,
        "tags": [string_tag("otel.scope.name", "tracemesh"), *attributes, string_tag("span.kind", kind)],
        "logs": [],
        "processID": process,
        "warnings": None,
    }


def jaeger_v2_answer() -> dict[str, Any]:
    """productpage's CLIENT span and details' SERVER span for one call, as GET /api/traces returns them."""
    client = jaeger_v2_span("a1b2c3d4e5f60718", None, "client", [
        string_tag("http.method", "GET"),
        string_tag("upstream_cluster", "outbound|9080||details.default.svc.cluster.local"),
        string_tag("peer.address", PRODUCTPAGE_IP),
        string_tag("net.host.ip", PRODUCTPAGE_IP),
        string_tag("net.peer.ip", DETAILS_IP),
        {"key": "net.peer.port", "type": "int64", "value": 9080},
    ], "p1")
    server = jaeger_v2_span("0718a1b2c3d4e5f6", "a1b2c3d4e5f60718", "server", [
        string_tag("http.method", "GET"),
        string_tag("upstream_cluster", "inbound|9080||"),
        string_tag("peer.address", PRODUCTPAGE_IP),
        string_tag("net.host.ip", DETAILS_IP),
        string_tag("net.peer.ip", PRODUCTPAGE_IP),
        {"key": "net.peer.port", "type": "int64", "value": 43512},
    ], "p2")
    return {
        "data": [{
            "traceID": TRACE_ID,
            "spans": [client, server],
            "processes": {"p1": {"serviceName": "productpage.default", "tags": []},
                          "p2": {"serviceName": "details.default", "tags": []}},
            "warnings": None,
        }],
        "total": 0, "limit": 0, "offset": 0, "errors": None,
    }


def test_the_pod_addresses_are_read_from_jaeger_v2s_span_tags() -> None:
    client, server = trace_from_jaeger(jaeger_v2_answer()["data"][0])
    assert client.local_endpoint == Endpoint("productpage.default", PRODUCTPAGE_IP)
    assert client.remote_endpoint == Endpoint(None, DETAILS_IP, None, 9080)
    assert server.local_endpoint == Endpoint("details.default", DETAILS_IP)
    assert server.remote_endpoint == Endpoint(None, PRODUCTPAGE_IP, None, 43512)
    # The OTLP form of the endpoints is read into them, not left behind as tags as well.
    assert not {"net.host.ip", "net.peer.ip", "net.peer.port"} & (client.tags.keys() | server.tags.keys())
    assert server.tags["peer.address"] == PRODUCTPAGE_IP


def test_the_kind_address_check_passes_on_a_jaeger_v2_trace() -> None:
    check_addresses(trace_from_jaeger(jaeger_v2_answer()["data"][0]), POD_IPS)


def test_the_kind_address_check_still_catches_a_wrong_pod() -> None:
    with pytest.raises(AssertionError, match=r"localEndpoint\.ipv4 10\.244\.0\.12 is not a productpage pod"):
        check_addresses(trace_from_jaeger(jaeger_v2_answer()["data"][0]),
                        {"productpage": {"10.244.0.99"}, "details": {DETAILS_IP}})
