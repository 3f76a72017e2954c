"""Zipkin v1 spans converted to v2 as Zipkin converts them, read from v1 JSON and v1 Thrift.

The conversion cases are ported from openzipkin/zipkin's zipkin/src/test/java/zipkin2/v1/SpanConverterTest.java
and V1SpanConverterTest.java (Apache-2.0, Copyright The OpenZipkin Authors), with its TestObjects
endpoints FRONTEND and BACKEND.
"""

from __future__ import annotations

import json
import struct
from dataclasses import replace

import pytest

from tracemesh_collector import zipkin_v1_json, zipkin_v1_thrift
from tracemesh_collector.zipkin_v1 import V1Annotation, V1BinaryAnnotation, V1Span, convert
from tracemesh_sidecar.spans.errors import SpanDecodeError
from tracemesh_sidecar.spans.model import Annotation, Endpoint, Span

FRONTEND = Endpoint(service_name="frontend", ipv4="127.0.0.1")
BACKEND = Endpoint(service_name="backend", ipv4="192.168.99.101", port=9000)
KAFKA = Endpoint(service_name="kafka")
TRACE, PARENT, ID = "0000000000000001", "0000000000000002", "0000000000000003"
T0 = 1472470996199000


def v2(**fields: object) -> Span:
    base = Span(trace_id=TRACE, id=ID, parent_id=PARENT, name="get", kind=None, timestamp=0, duration=0,
                local_endpoint=Endpoint())
    return replace(base, **fields)


def v1(*annotations: tuple[int, str, Endpoint | None], binary: tuple[V1BinaryAnnotation, ...] = (),
       **fields: object) -> V1Span:
    span = V1Span(trace_id=TRACE, id=ID, parent_id=PARENT, name="get",
                  annotations=[V1Annotation(*annotation) for annotation in annotations],
                  binary_annotations=list(binary))
    return replace(span, **fields)


def tag(key: str, value: str, endpoint: Endpoint | None) -> V1BinaryAnnotation:
    return V1BinaryAnnotation(key, value, endpoint)


def address(key: str, endpoint: Endpoint) -> V1BinaryAnnotation:
    return V1BinaryAnnotation(key, None, endpoint)


def test_client_and_server() -> None:
    """clientAndServer: one v1 span holding both sides is two v2 spans, the server one shared."""
    source = v1((T0, "cs", FRONTEND), (1472470996238000, "ws", FRONTEND), (1472470996250000, "sr", BACKEND),
                (1472470996350000, "ss", BACKEND), (1472470996403000, "wr", FRONTEND),
                (1472470996406000, "cr", FRONTEND),
                binary=(tag("http.path", "/api", FRONTEND), tag("http.path", "/BACKEND", BACKEND),
                        tag("clnt/finagle.version", "6.45.0", FRONTEND), tag("srv/finagle.version", "6.44.0", BACKEND),
                        address("ca", FRONTEND), address("sa", BACKEND)),
                timestamp=T0, duration=207000)
    client = v2(kind="CLIENT", local_endpoint=FRONTEND, remote_endpoint=BACKEND, timestamp=T0, duration=207000,
                annotations=[Annotation(1472470996238000, "ws"), Annotation(1472470996403000, "wr")],
                tags={"http.path": "/api", "clnt/finagle.version": "6.45.0"})
    server = v2(kind="SERVER", shared=True, local_endpoint=BACKEND, remote_endpoint=FRONTEND,
                timestamp=1472470996250000, duration=100000,
                tags={"http.path": "/BACKEND", "srv/finagle.version": "6.44.0"})
    assert convert(source) == [client, server]


def test_assumes_server_without_timestamp_is_shared() -> None:
    source = v1((1472470996250000, "sr", BACKEND), (1472470996350000, "ss", BACKEND))
    assert convert(source) == [v2(kind="SERVER", shared=True, local_endpoint=BACKEND, timestamp=1472470996250000,
                                  duration=100000)]


def test_client_and_server_loopback() -> None:
    source = v1((T0, "cs", FRONTEND), (1472470996250000, "sr", FRONTEND), (1472470996350000, "ss", FRONTEND),
                (1472470996406000, "cr", FRONTEND), timestamp=T0, duration=207000)
    assert convert(source) == [
        v2(kind="CLIENT", local_endpoint=FRONTEND, timestamp=T0, duration=207000),
        v2(kind="SERVER", shared=True, local_endpoint=FRONTEND, timestamp=1472470996250000, duration=100000)]


def test_oneway_loopback() -> None:
    source = v1((T0, "cs", FRONTEND), (1472470996250000, "sr", FRONTEND))
    assert convert(source) == [v2(kind="CLIENT", local_endpoint=FRONTEND, timestamp=T0),
                               v2(kind="SERVER", shared=True, local_endpoint=FRONTEND, timestamp=1472470996250000)]


def test_parses_shared_flag_from_rpc_span() -> None:
    """A MySQL row with the client's timestamp: the server side is still shared."""
    source = v1((20, "sr", BACKEND), (30, "ss", BACKEND), timestamp=10)
    assert convert(source) == [v2(kind="SERVER", shared=True, local_endpoint=BACKEND, timestamp=20, duration=10)]


def test_data_missing_endpoint_goes_on_first_span() -> None:
    source = v1((T0, "foo", FRONTEND), (1472470996238000, "bar", FRONTEND), (1472470996250000, "baz", BACKEND),
                (1472470996350000, "qux", BACKEND), (1472470996403000, "missing", None),
                binary=(tag("foo", "bar", FRONTEND), tag("baz", "qux", BACKEND), tag("missing", "", None)),
                parent_id=None, id="0000000000000002", name="missing")
    first = v2(id="0000000000000002", parent_id=None, name="missing", local_endpoint=FRONTEND,
               annotations=[Annotation(T0, "foo"), Annotation(1472470996238000, "bar"),
                            Annotation(1472470996403000, "missing")], tags={"foo": "bar", "missing": ""})
    second = v2(id="0000000000000002", parent_id=None, name="missing", local_endpoint=BACKEND,
                annotations=[Annotation(1472470996250000, "baz"), Annotation(1472470996350000, "qux")],
                tags={"baz": "qux"})
    assert convert(source) == [first, second]


@pytest.mark.parametrize(("core", "key", "expected"), [
    ((T0, "mr", BACKEND), address("ma", KAFKA), v2(kind="CONSUMER", local_endpoint=BACKEND, remote_endpoint=KAFKA)),
    ((T0, "cs", FRONTEND), address("sa", BACKEND), v2(kind="CLIENT", local_endpoint=FRONTEND, remote_endpoint=BACKEND)),
    ((T0, "sr", BACKEND), address("ca", FRONTEND),
     v2(kind="SERVER", local_endpoint=BACKEND, remote_endpoint=FRONTEND, shared=True)),
    # zipkin-ruby's "1" instead of true: still an address
    ((T0, "cs", FRONTEND), tag("sa", "1", BACKEND),
     v2(kind="CLIENT", local_endpoint=FRONTEND, remote_endpoint=BACKEND)),
])
def test_address_annotations(core: tuple[int, str, Endpoint], key: V1BinaryAnnotation, expected: Span) -> None:
    """V1SpanConverterTest convert_ma / convert_sa / convert_ca and their _incorrect_value variants."""
    source = v1(core, binary=(key,), parent_id=None, id="0000000000000002")
    assert convert(source) == [replace(expected, parent_id=None, id="0000000000000002", name="get", timestamp=T0)]


# ---- v1 JSON ---------------------------------------------------------------------------------


V1_JSON_CLIENT_AND_SERVER = [{
    "traceId": "0000000000000001", "parentId": "0000000000000002", "id": "0000000000000003", "name": "get",
    "timestamp": T0, "duration": 207000,
    "annotations": [
        {"timestamp": T0, "value": "cs", "endpoint": {"serviceName": "frontend", "ipv4": "127.0.0.1"}},
        {"timestamp": 1472470996250000, "value": "sr",
         "endpoint": {"serviceName": "backend", "ipv4": "192.168.99.101", "port": 9000}},
        {"timestamp": 1472470996350000, "value": "ss",
         "endpoint": {"serviceName": "backend", "ipv4": "192.168.99.101", "port": 9000}},
        {"timestamp": 1472470996406000, "value": "cr", "endpoint": {"serviceName": "frontend", "ipv4": "127.0.0.1"}},
    ],
    "binaryAnnotations": [
        {"key": "http.path", "value": "/api", "endpoint": {"serviceName": "frontend", "ipv4": "127.0.0.1"}},
        {"key": "sa", "value": True, "endpoint": {"serviceName": "backend", "ipv4": "192.168.99.101", "port": 9000}},
        {"key": "ignored.number", "value": 5, "endpoint": None},
    ],
    "debug": None,
}]


def test_v1_json_is_read_and_converted() -> None:
    client, server = zipkin_v1_json.decode_spans(json.dumps(V1_JSON_CLIENT_AND_SERVER).encode())
    assert client == v2(kind="CLIENT", local_endpoint=FRONTEND, remote_endpoint=BACKEND, timestamp=T0,
                        duration=207000, tags={"http.path": "/api"})
    assert server == v2(kind="SERVER", shared=True, local_endpoint=BACKEND, timestamp=1472470996250000,
                        duration=100000)


@pytest.mark.parametrize(("document", "named"), [
    ({"id": ID}, "span[0].traceId"),
    ({"traceId": TRACE, "id": ID, "annotations": [{"value": "cs"}]}, "span[0].annotations[0]"),
    ({"traceId": TRACE, "id": ID, "binaryAnnotations": [{"value": "x"}]}, "span[0].binaryAnnotations[0].key"),
    ({"traceId": TRACE, "id": ID, "timestamp": "yesterday"}, "span[0].timestamp"),
])
def test_malformed_v1_json_names_the_field(document: dict[str, object], named: str) -> None:
    with pytest.raises(SpanDecodeError, match=named.replace("[", r"\[").replace("]", r"\]")):
        zipkin_v1_json.decode_spans(json.dumps([document]).encode())


# ---- v1 Thrift (TBinaryProtocol, as zipkin's ThriftCodec writes it) ----------------------------


def field(kind: int, number: int, value: bytes) -> bytes:
    return struct.pack(">bh", kind, number) + value


def thrift_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">i", len(raw)) + raw


def thrift_endpoint(endpoint: Endpoint) -> bytes:
    ipv4 = int.from_bytes(bytes(map(int, (endpoint.ipv4 or "0.0.0.0").split("."))), "big")
    return (field(8, 1, struct.pack(">I", ipv4)) + field(6, 2, struct.pack(">H", endpoint.port or 0))
            + field(11, 3, thrift_string(endpoint.service_name or "")) + b"\x00")


def thrift_annotation(timestamp: int, value: str, endpoint: Endpoint) -> bytes:
    return (field(10, 1, struct.pack(">q", timestamp)) + field(11, 2, thrift_string(value))
            + field(12, 3, thrift_endpoint(endpoint)) + b"\x00")


def thrift_binary(key: str, value: bytes, kind: int, endpoint: Endpoint) -> bytes:
    return (field(11, 1, thrift_string(key)) + field(11, 2, struct.pack(">i", len(value)) + value)
            + field(8, 3, struct.pack(">i", kind)) + field(12, 4, thrift_endpoint(endpoint)) + b"\x00")


def thrift_list(kind: int, items: list[bytes]) -> bytes:
    return struct.pack(">bi", kind, len(items)) + b"".join(items)


def thrift_client_and_server() -> bytes:
    span = (field(10, 1, struct.pack(">q", 1)) + field(11, 3, thrift_string("get"))
            + field(10, 4, struct.pack(">q", 3)) + field(10, 5, struct.pack(">q", 2))
            + field(15, 6, thrift_list(12, [thrift_annotation(T0, "cs", FRONTEND),
                                            thrift_annotation(1472470996250000, "sr", BACKEND),
                                            thrift_annotation(1472470996350000, "ss", BACKEND),
                                            thrift_annotation(1472470996406000, "cr", FRONTEND)]))
            + field(15, 8, thrift_list(12, [thrift_binary("http.path", b"/api", 6, FRONTEND),
                                            thrift_binary("sa", b"\x01", 0, BACKEND)]))
            + field(2, 9, b"\x00")
            + field(10, 10, struct.pack(">q", T0)) + field(10, 11, struct.pack(">q", 207000))
            # an unknown field (a map), which is skipped
            + field(13, 99, struct.pack(">bbi", 11, 11, 1) + thrift_string("k") + thrift_string("v"))
            + b"\x00")
    return thrift_list(12, [span])


def test_v1_thrift_is_read_and_converted_like_v1_json() -> None:
    from_json = zipkin_v1_json.decode_spans(json.dumps(V1_JSON_CLIENT_AND_SERVER).encode())
    assert zipkin_v1_thrift.decode_spans(thrift_client_and_server()) == from_json


@pytest.mark.parametrize("body", [b"\x0c\x00\x00\x00\x01\x0a\x00", b"\x0c\x7f\xff\xff\xff",
                                  thrift_client_and_server()[:-7]])
def test_truncated_thrift_is_refused(body: bytes) -> None:
    with pytest.raises(SpanDecodeError, match="body"):
        zipkin_v1_thrift.decode_spans(body)


def test_thrift_nested_too_deep_is_refused() -> None:
    # an unknown field holding lists of lists ... 10 000 deep
    body = thrift_list(12, [field(15, 50, b"\x0f\x00\x00\x00\x01" * 10_000)])
    with pytest.raises(SpanDecodeError, match="too deeply"):
        zipkin_v1_thrift.decode_spans(body)
