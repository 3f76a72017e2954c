"""Zipkin v2 JSON: what the proxy sends must satisfy the official API spec; bad input is refused by field."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from proxy_span_samples import make_client_span

from tracemesh_sidecar.spans import zipkin_json
from tracemesh_sidecar.spans.errors import SpanDecodeError
from tracemesh_sidecar.spans.model import Endpoint, Span

SPEC = Path(__file__).resolve().parents[2] / ".." / "shared" / "spec" / "zipkin2-api.yaml"


@pytest.fixture(scope="module")
def list_of_spans_schema() -> dict[str, Any]:
    """The spec's `definitions` as a JSON Schema for ListOfSpans.

    Swagger 2.0 schemas are JSON Schema draft 4. On top of the spec, objects may hold only the
    properties it defines, so a misspelt or snake_case field fails the test instead of passing
    unnoticed.
    """
    if not SPEC.exists():
        pytest.skip("../shared/spec not present (a user's clone has no shared/)")
    definitions = copy.deepcopy(yaml.safe_load(SPEC.read_text())["definitions"])
    for name in ("Span", "Endpoint", "Annotation"):
        definitions[name]["additionalProperties"] = False
    return {"definitions": definitions, "$ref": "#/definitions/ListOfSpans"}


def validate(schema: dict[str, Any], payload: object) -> None:
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker()).validate(payload)


def test_proxy_spans_satisfy_the_official_schema(list_of_spans_schema: dict[str, Any],
                                                 proxy_spans: list[Span]) -> None:
    payload = json.loads(zipkin_json.encode_spans(proxy_spans))
    validate(list_of_spans_schema, payload)
    client, server = payload
    assert client["kind"] == "CLIENT" and server["kind"] == "SERVER"
    assert server["parentId"] == client["id"]
    assert client["localEndpoint"] == {"serviceName": "productpage.default", "ipv4": "10.244.0.5"}
    assert server["tags"]["error"] == "true"
    assert server["annotations"] == [{"timestamp": 1_763_700_000_001_000, "value": "ws"}]


def test_schema_check_is_not_vacuous(list_of_spans_schema: dict[str, Any]) -> None:
    good = zipkin_json.span_to_zipkin_dict(make_client_span())
    for bad in ({**good, "traceId": "XYZ"}, {**good, "trace_id": good["traceId"]},
                {**good, "localEndpoint": {"ipv4": "not-an-ip"}}, {**good, "tags": {"n": 1}}):
        with pytest.raises(jsonschema.ValidationError):
            validate(list_of_spans_schema, [bad])


def test_empty_and_zero_fields_are_left_out(list_of_spans_schema: dict[str, Any]) -> None:
    span = Span(trace_id="5af7183fb1d4cf5f", id="352bff9a74ca9ad2", name="", kind=None, timestamp=0,
                duration=0, local_endpoint=Endpoint(service_name="backend", port=0),
                remote_endpoint=Endpoint())
    encoded = zipkin_json.span_to_zipkin_dict(span)
    assert encoded == {"traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2",
                       "localEndpoint": {"serviceName": "backend"}}
    validate(list_of_spans_schema, [encoded])


# Zipkin's own order of a span's fields (zipkin2.internal.V2SpanWriter).
ZIPKIN_FIELD_ORDER = ["traceId", "parentId", "id", "kind", "name", "timestamp", "duration", "localEndpoint",
                      "remoteEndpoint", "annotations", "tags", "debug", "shared"]


@pytest.mark.parametrize("empty", [None, "parent_id", "kind", "name", "timestamp", "duration", "local_endpoint"])
def test_each_field_left_empty_alone_is_left_out_and_the_rest_keep_zipkins_order(empty: str | None) -> None:
    """The request body and the collector's API objects (zipkin_schema's Struct, encoded and as builtins) write
    exactly the fields with a value, in Zipkin's order."""
    full = Span(trace_id="5af7183fb1d4cf5f", id="352bff9a74ca9ad2", parent_id="6b221d5bc9e6496c", name="get /",
                kind="SERVER", timestamp=1_763_700_000_000_000, duration=207_000,
                local_endpoint=Endpoint(service_name="backend", ipv4="10.244.0.5"),
                remote_endpoint=Endpoint(ipv4="10.244.0.6", port=41234), tags={"http.method": "GET"},
                annotations=[], debug=True, shared=True)
    blank: dict[str, Any] = {"parent_id": None, "kind": None, "name": "", "timestamp": 0, "duration": 0,
                             "local_endpoint": Endpoint()}
    span = dataclasses.replace(full, **{empty: blank[empty]}) if empty else full
    encoded = zipkin_json.span_to_zipkin_dict(span)
    expected = {"traceId", "parentId", "id", "kind", "name", "timestamp", "duration", "localEndpoint",
                "remoteEndpoint", "tags", "debug", "shared"}
    left_out = {None: None, "parent_id": "parentId", "kind": "kind", "name": "name", "timestamp": "timestamp",
                "duration": "duration", "local_endpoint": "localEndpoint"}[empty]
    order = [name for name in ZIPKIN_FIELD_ORDER if name in expected - {left_out}]
    assert list(encoded) == order
    body = zipkin_json.encode_spans([span])
    assert [list(document) for document in json.loads(body)] == [order]
    assert zipkin_json.decode_spans(body) == [span]


def test_round_trip(proxy_spans: list[Span]) -> None:
    assert zipkin_json.decode_spans(zipkin_json.encode_spans(proxy_spans)) == proxy_spans


def test_a_128_bit_trace_id_with_a_zero_high_half_reads_as_64_bit_like_zipkin() -> None:
    # What an OpenTelemetry SDK sends for a trace a 64-bit B3 caller started: the OTLP decoder and
    # the proxy's header parsing already read it as the 64-bit id, so every path names one trace alike.
    span = dict(GOOD, traceId="0000000000000000" + "5af7183fb1d4cf5f")
    [decoded] = zipkin_json.decode_spans(json.dumps([span]).encode())
    assert decoded.trace_id == "5af7183fb1d4cf5f"


def test_decodes_the_spec_example_and_is_liberal_where_zipkin_is() -> None:
    body = json.dumps([{
        "id": "352BFF9A74CA9AD2", "traceId": "5af7183fb1d4cf5f", "parentId": "0000000000000000",
        "name": "get /api", "timestamp": 1556604172355737, "duration": 1431, "kind": "SERVER",
        "localEndpoint": {"serviceName": "backend", "ipv4": "192.168.99.1", "port": 3306},
        "remoteEndpoint": {"ipv4": "172.19.0.2", "port": 58648},
        "tags": {"http.method": "GET", "http.path": "/api"}, "debug": None, "futureField": {"x": 1},
    }]).encode()
    [span] = zipkin_json.decode_spans(body)
    assert span.id == "352bff9a74ca9ad2"  # uppercase accepted, lowercased
    assert span.trace_id == "5af7183fb1d4cf5f"  # a 64-bit trace id stays 64-bit
    assert span.parent_id is None  # Zipkin reads an all-zero parent as "no parent"
    assert span.local_endpoint == Endpoint(service_name="backend", ipv4="192.168.99.1", port=3306)
    assert span.remote_endpoint == Endpoint(ipv4="172.19.0.2", port=58648)
    assert span.debug is False


GOOD = zipkin_json.span_to_zipkin_dict(make_client_span())


@pytest.mark.parametrize(("change", "field", "problem"), [
    ({"traceId": "abc"}, "traceId", "must be 16 or 32 lowercase hex characters"),
    ({"traceId": "4e441824ec2b6a44ffdc9bb9a6453df"}, "traceId", "16 or 32"),  # 31: no left-padding
    ({"traceId": "g" * 32}, "traceId", "hex"),
    ({"traceId": "0" * 32}, "traceId", "all zeros"),
    ({"traceId": None}, "traceId", "is required"),
    ({"traceId": 12345}, "traceId", "hex"),
    ({"id": "ffdc9bb9a6453df3ff"}, "id", "16 lowercase hex characters"),
    ({"parentId": "xyz"}, "parentId", "16 lowercase hex characters"),
    ({"kind": "client"}, "kind", "must be one of CLIENT, SERVER, PRODUCER, CONSUMER"),
    ({"name": 7}, "name", "must be a string"),
    ({"timestamp": -1}, "timestamp", "non-negative integer"),
    ({"timestamp": "1556604172355737"}, "timestamp", "integer"),
    ({"duration": 1.5}, "duration", "integer"),
    ({"duration": True}, "duration", "integer"),
    ({"debug": "yes"}, "debug", "true or false"),
    ({"localEndpoint": "productpage"}, "localEndpoint", "must be a JSON object"),
    ({"localEndpoint": {"ipv4": "10.0.0.300"}}, "localEndpoint.ipv4", "IPv4 address"),
    ({"remoteEndpoint": {"ipv6": "::g"}}, "remoteEndpoint.ipv6", "IPv6 address"),
    # GOOD's own IPv4 address, already read (and remembered) as valid in its ipv4 field: wrong in this one
    ({"remoteEndpoint": {"ipv6": GOOD["localEndpoint"]["ipv4"]}}, "remoteEndpoint.ipv6", "IPv6 address"),
    ({"localEndpoint": {"ipv4": "2001:db8::c001"}}, "localEndpoint.ipv4", "IPv4 address"),
    ({"remoteEndpoint": {"port": 70000}}, "remoteEndpoint.port", "0-65535"),
    ({"remoteEndpoint": {"serviceName": ["x"]}}, "remoteEndpoint.serviceName", "must be a string"),
    ({"tags": {"http.status_code": 200}}, "tags.http.status_code", "must be a string"),
    ({"tags": ["a"]}, "tags", "must be a JSON object"),
    ({"annotations": {"timestamp": 1}}, "annotations", "must be an array"),
    ({"annotations": [{"value": "ws"}]}, "annotations[0].timestamp", "is required"),
    ({"annotations": [{"timestamp": 1}]}, "annotations[0].value", "is required"),
])
def test_bad_span_is_refused_naming_span_and_field(change: dict[str, Any], field: str, problem: str) -> None:
    batch = [GOOD, GOOD, GOOD, {**GOOD, **change}]
    with pytest.raises(SpanDecodeError) as caught:
        zipkin_json.decode_spans(json.dumps(batch).encode())
    assert caught.value.field == f"span[3].{field}"
    assert str(caught.value).startswith(f"span[3].{field}: ")
    assert problem in caught.value.problem


def test_missing_id_is_refused() -> None:
    with pytest.raises(SpanDecodeError, match=r"^span\[0\]\.id: is required"):
        zipkin_json.decode_spans(json.dumps([{"traceId": GOOD["traceId"]}]).encode())


@pytest.mark.parametrize(("body", "problem"), [
    (b"", "is not valid JSON"),
    (b"[{", "is not valid JSON"),
    (b"\xff\xfe", "is not valid JSON"),
    (b'{"traceId": "5af7183fb1d4cf5f"}', "must be a JSON array of spans"),
    (b"[1]", "must be a JSON object"),
])
def test_malformed_body_is_refused(body: bytes, problem: str) -> None:
    with pytest.raises(SpanDecodeError) as caught:
        zipkin_json.decode_spans(body)
    assert problem in str(caught.value)


def test_empty_list_is_an_empty_batch() -> None:
    assert zipkin_json.decode_spans(b"[]") == []
