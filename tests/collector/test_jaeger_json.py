"""Span <-> Jaeger query JSON, both ways, and reading what a real Jaeger writes."""

from __future__ import annotations

from typing import Any

import pytest
from collector_samples import NOW_US, bookinfo_trace, trace_id

from tracemesh_collector.jaeger_json import trace_from_jaeger, trace_to_jaeger
from tracemesh_sidecar.spans.errors import SpanDecodeError
from tracemesh_sidecar.spans.model import Annotation, Endpoint, Span


def full_span() -> Span:
    return Span(
        trace_id="4e441824ec2b6a44ffdc9bb9a6453df3", id="ffdc9bb9a6453df3", parent_id="5af7183fb1d4cf5f",
        name="reviews.default.svc.cluster.local:9080/*", kind="CLIENT", timestamp=NOW_US, duration=5321,
        local_endpoint=Endpoint("productpage.default", "10.244.0.5", "2001:db8::5", 15001),
        remote_endpoint=Endpoint("reviews.default", "10.244.0.7", "2001:db8::7", 9080),
        tags={"http.status_code": "503", "error": "true", "response_flags": "UF"},
        annotations=[Annotation(NOW_US + 10, "retry"), Annotation(NOW_US + 20, "gave up")],
        debug=True,
    )


def test_round_trip_keeps_every_field_jaeger_can_carry() -> None:
    spans = [full_span(), *bookinfo_trace("4e441824ec2b6a44ffdc9bb9a6453df3", NOW_US)]
    assert trace_from_jaeger(trace_to_jaeger(spans)) == spans


def test_the_shape_the_jaeger_ui_reads() -> None:
    client = full_span()
    server = Span(trace_id=client.trace_id, id="0a1b2c3d4e5f6071", parent_id=client.id, name=client.name,
                  kind="SERVER", timestamp=NOW_US + 100, duration=5000, local_endpoint=Endpoint("reviews.default"))
    trace = trace_to_jaeger([client, server])
    assert trace["traceID"] == client.trace_id
    assert trace["processes"] == {
        "p1": {"serviceName": "productpage.default", "tags": [
            {"key": "ip", "type": "string", "value": "10.244.0.5"},
            {"key": "ipv6", "type": "string", "value": "2001:db8::5"},
            {"key": "port", "type": "int64", "value": 15001}]},
        "p2": {"serviceName": "reviews.default", "tags": []},
    }
    jaeger_client, jaeger_server = trace["spans"]
    assert jaeger_server == {
        "traceID": client.trace_id, "spanID": "0a1b2c3d4e5f6071", "flags": 1, "operationName": client.name,
        "references": [{"refType": "CHILD_OF", "traceID": client.trace_id, "spanID": client.id}],
        "startTime": NOW_US + 100, "duration": 5000,
        "tags": [{"key": "span.kind", "type": "string", "value": "server"}],
        "logs": [], "processID": "p2", "warnings": None,
    }
    assert jaeger_client["flags"] == 3  # sampled + debug
    assert jaeger_client["tags"][:2] == [{"key": "span.kind", "type": "string", "value": "client"},
                                         {"key": "http.status_code", "type": "string", "value": "503"}]
    assert {"key": "peer.service", "type": "string", "value": "reviews.default"} in jaeger_client["tags"]
    assert {"key": "peer.port", "type": "int64", "value": 9080} in jaeger_client["tags"]
    assert jaeger_client["logs"][0] == {"timestamp": NOW_US + 10,
                                        "fields": [{"key": "event", "type": "string", "value": "retry"}]}


def real_jaeger_trace() -> dict[str, Any]:
    """What Jaeger itself serves for a span it ingested from an OpenTelemetry SDK."""
    return {
        "traceID": "a4e4d6e3c2f1b0a9",
        "spans": [{
            "traceID": "a4e4d6e3c2f1b0a9", "spanID": "b0a9c2f1", "operationName": "GET /api",
            "references": [{"refType": "FOLLOWS_FROM", "traceID": "a4e4d6e3c2f1b0a9", "spanID": "1"},
                           {"refType": "CHILD_OF", "traceID": "a4e4d6e3c2f1b0a9", "spanID": "c2f1b0a9d6e3a4e4"}],
            "startTime": 1_700_000_000_000_000, "duration": 1200, "flags": 1,
            "tags": [{"key": "span.kind", "type": "string", "value": "server"},
                     {"key": "error", "type": "bool", "value": True},
                     {"key": "http.status_code", "type": "int64", "value": 500},
                     {"key": "sampler.param", "type": "float64", "value": 0.5},
                     {"key": "internal.span.format", "type": "string", "value": "otlp"}],
            "logs": [{"timestamp": 1_700_000_000_000_100,
                      "fields": [{"key": "event", "type": "string", "value": "exception"},
                                 {"key": "exception.message", "type": "string", "value": "boom"}]}],
            "processID": "p1", "warnings": None,
        }],
        "processes": {"p1": {"serviceName": "api", "tags": [{"key": "ip", "type": "int64", "value": 167772165},
                                                            {"key": "hostname", "type": "string", "value": "h"}]}},
        "warnings": None,
    }


def test_reading_a_real_jaegers_json() -> None:
    [span] = trace_from_jaeger(real_jaeger_trace())
    assert (span.trace_id, span.id, span.parent_id) == ("a4e4d6e3c2f1b0a9", "00000000b0a9c2f1", "c2f1b0a9d6e3a4e4")
    assert (span.kind, span.name, span.timestamp, span.duration) == ("SERVER", "GET /api", 1_700_000_000_000_000, 1200)
    assert span.local_endpoint == Endpoint("api", "10.0.0.5")
    assert span.remote_endpoint is None
    assert span.tags == {"error": "true", "http.status_code": "500", "sampler.param": "0.5",
                         "internal.span.format": "otlp"}
    assert span.annotations == [Annotation(1_700_000_000_000_100, "event=exception exception.message=boom")]


@pytest.mark.parametrize(("path", "value", "named"), [
    (("spans", 0, "spanID"), "not-hex", "trace.spans[0].spanID"),
    (("spans", 0, "traceID"), None, "trace.spans[0].traceID"),
    (("spans", 0, "startTime"), "yesterday", "trace.spans[0].startTime"),
    (("spans", 0, "processID"), "p9", "trace.spans[0].processID"),
    (("spans", 0, "tags"), {"error": True}, "trace.spans[0].tags"),
    (("spans", 0, "references", 1, "spanID"), 7, "trace.spans[0].references[1].spanID"),
    (("spans",), None, "trace.spans"),
])
def test_malformed_jaeger_json_is_refused_naming_the_field(path: tuple[Any, ...], value: Any, named: str) -> None:
    document = real_jaeger_trace()
    target: Any = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SpanDecodeError) as raised:
        trace_from_jaeger(document)
    assert str(raised.value).startswith(named)


def test_an_empty_trace() -> None:
    assert trace_to_jaeger([])["spans"] == []
    assert trace_from_jaeger({"traceID": trace_id(1), "spans": [], "processes": {}}) == []
