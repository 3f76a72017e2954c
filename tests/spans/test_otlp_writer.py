"""otlp_writer.encode_request against protobuf's own serialization of the same request, byte for byte.

The reference fills the official opentelemetry-proto classes field by field, as the exporter did before the
writer (and as OpenTelemetry's Zipkin translator maps a Zipkin span); the writer must produce exactly what
protobuf's serializer produces for it, for every shape of span the model can hold.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from proxy_span_samples import make_client_span, make_server_span

from tracemesh_sidecar.spans import otlp, otlp_writer
from tracemesh_sidecar.spans.model import Annotation, Endpoint, Span, SpanKind


def reference_request(spans: Sequence[Span], resource: Sequence[tuple[str, str]] = ()) -> bytes:
    by_service: dict[str | None, ResourceSpans] = {}
    request = ExportTraceServiceRequest()
    for span in spans:
        service = span.local_endpoint.service_name
        resource_spans = by_service.get(service)
        if resource_spans is None:
            resource_spans = request.resource_spans.add()
            attributes = ({"service.name": service} if service is not None else {}) | dict(resource)
            for key, value in attributes.items():
                add_string(resource_spans.resource.attributes, key, value)
            resource_spans.scope_spans.add().scope.name = "tracemesh"
            by_service[service] = resource_spans
        fill_span(resource_spans.scope_spans[0].spans.add(), span)
    return request.SerializeToString()


def fill_span(target: Any, span: Span) -> None:
    target.trace_id = bytes.fromhex(span.trace_id.rjust(32, "0"))
    target.span_id = bytes.fromhex(span.id)
    if span.parent_id:
        target.parent_span_id = bytes.fromhex(span.parent_id)
    target.name = span.name
    target.kind = {None: OtlpSpan.SPAN_KIND_INTERNAL, "SERVER": OtlpSpan.SPAN_KIND_SERVER,
                   "CLIENT": OtlpSpan.SPAN_KIND_CLIENT, "PRODUCER": OtlpSpan.SPAN_KIND_PRODUCER,
                   "CONSUMER": OtlpSpan.SPAN_KIND_CONSUMER}[span.kind]
    target.start_time_unix_nano = span.timestamp * 1000
    target.end_time_unix_nano = (span.timestamp + span.duration) * 1000
    for key, value in span.tags.items():
        add_string(target.attributes, key, value)
    for endpoint, ip_key, port_key in ((span.local_endpoint, "net.host.ip", "net.host.port"),
                                       (span.remote_endpoint, "net.peer.ip", "net.peer.port")):
        if endpoint is None:
            continue
        if endpoint is span.remote_endpoint and endpoint.service_name:
            add_string(target.attributes, "peer.service", endpoint.service_name)
        if endpoint.ipv4 or endpoint.ipv6:
            add_string(target.attributes, ip_key, endpoint.ipv4 or endpoint.ipv6 or "")
        if endpoint.port:
            attribute = target.attributes.add()
            attribute.key = port_key
            attribute.value.int_value = endpoint.port
    for annotation in span.annotations:
        event = target.events.add()
        event.time_unix_nano = annotation.timestamp * 1000
        event.name = annotation.value
    if span.tags.get("error") == "true":
        target.status.code = Status.STATUS_CODE_ERROR


def add_string(attributes: Any, key: str, value: str) -> None:
    attribute = attributes.add()
    attribute.key = key
    attribute.value.string_value = value


def random_text(rng: random.Random, longest: int) -> str:
    alphabet = "abcXYZ09-_./:~ éü€😀\t\""
    return "".join(rng.choice(alphabet) for _ in range(rng.choice((0, 1, 5, 40, longest))))


def random_endpoint(rng: random.Random) -> Endpoint:
    ipv4, ipv6 = rng.choice(((None, None), ("10.244.0.5", None), (None, "2001:db8::c001"), ("127.0.0.1", "::1")))
    return Endpoint(service_name=rng.choice((None, "", "reviews.default", random_text(rng, 300))), ipv4=ipv4,
                    ipv6=ipv6, port=rng.choice((None, 0, 1, 127, 128, 9080, 65535, 1 << 40)))


def random_span(rng: random.Random) -> Span:
    kinds: tuple[SpanKind | None, ...] = (None, "CLIENT", "SERVER", "PRODUCER", "CONSUMER")
    tags = {random_text(rng, 200) or "k": random_text(rng, rng.choice((10, 130, 20_000)))
            for _ in range(rng.randrange(25))}
    if rng.random() < 0.3:
        tags["error"] = rng.choice(("true", "false"))
    return Span(
        trace_id=f"{rng.getrandbits(64):016x}" if rng.random() < 0.5 else f"{rng.getrandbits(128):032x}",
        id=f"{rng.getrandbits(64):016x}",
        parent_id=rng.choice((None, "", f"{rng.getrandbits(64):016x}")),
        name=random_text(rng, 300),
        kind=rng.choice(kinds),
        timestamp=rng.choice((0, 1, 1_763_700_000_000_000)),
        duration=rng.choice((0, 1, 127, 128, 10**9)),
        local_endpoint=rng.choice((Endpoint("productpage.default", ipv4="10.244.0.5"), random_endpoint(rng))),
        remote_endpoint=rng.choice((None, random_endpoint(rng))),
        tags=tags,
        annotations=[Annotation(rng.choice((0, 1_763_700_000_000_001)), random_text(rng, 200))
                     for _ in range(rng.randrange(3))],
    )


@pytest.mark.parametrize("seed", range(40))
def test_random_requests_match_protobufs_serialization(seed: int) -> None:
    rng = random.Random(seed)
    spans = [random_span(rng) for _ in range(rng.randrange(1, 12))]
    resource = rng.choice(((), (("k8s.pod.name", "productpage-v1-6b7f"),), (("service.name", "renamed"), ("a", "é"))))
    assert otlp_writer.encode_request(spans, resource) == reference_request(spans, resource)


def test_proxy_spans_match_protobufs_serialization_and_read_back(proxy_spans: list[Span]) -> None:
    body = otlp_writer.encode_request(proxy_spans)
    assert body == reference_request(proxy_spans)
    assert otlp.decode_request_proto(body) == proxy_spans
    client, server = make_client_span(), make_server_span()
    two_services = [client, server, client]  # read back by service: the client's spans first
    assert otlp.decode_request_proto(otlp_writer.encode_request(two_services)) == [client, client, server]


def test_no_spans_is_an_empty_request() -> None:
    assert otlp_writer.encode_request([]) == b"" == ExportTraceServiceRequest().SerializeToString()


def test_kind_numbers_are_the_official_enum() -> None:
    assert otlp_writer.KIND_NUMBERS == {None: OtlpSpan.SPAN_KIND_INTERNAL, "SERVER": OtlpSpan.SPAN_KIND_SERVER,
                                        "CLIENT": OtlpSpan.SPAN_KIND_CLIENT, "PRODUCER": OtlpSpan.SPAN_KIND_PRODUCER,
                                        "CONSUMER": OtlpSpan.SPAN_KIND_CONSUMER}


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16_383, 16_384, 2**35, 2**63 - 1])
def test_varint_matches_protobufs(value: int) -> None:
    assert AnyValue(int_value=value).SerializeToString() == b"\x18" + otlp_writer.varint(value)  # field 3, varint


def test_attributes_from_the_cache_are_the_ones_encoded(proxy_spans: list[Span]) -> None:
    first = otlp_writer.encode_request(proxy_spans)  # fills the cache
    assert otlp_writer._SPAN_ATTRIBUTES  # so that the second encoding reads it
    assert otlp_writer.encode_request(proxy_spans) == first == reference_request(proxy_spans)


def test_a_negative_varint_is_refused_not_written_wrong() -> None:
    with pytest.raises(ValueError, match="never negative, got -1"):
        otlp_writer.varint(-1)


def test_many_distinct_keys_and_values_are_encoded_within_the_caches_bounds() -> None:
    spans = [Span(f"{n:032x}", f"{n + 1:016x}", "n", "CLIENT", 1, 1, Endpoint("s"),
                  tags={f"key-{n}": "v", "request": f"id-{n}", "long": "x" * (n % 400)}) for n in range(3000)]
    for _ in range(2):
        assert otlp_writer.encode_request(spans) == reference_request(spans)
    assert len(otlp_writer._KEY_FIELDS) <= otlp_writer._KEY_FIELDS_MAX
    assert len(otlp_writer._SPAN_ATTRIBUTES) <= otlp_writer._CACHED_KEYS_MAX
    cached = [field for values in otlp_writer._SPAN_ATTRIBUTES.values() for field in values.values()]
    assert all(len(values) <= otlp_writer._CACHED_VALUES_PER_KEY for values in otlp_writer._SPAN_ATTRIBUTES.values())
    assert max(map(len, cached)) <= otlp_writer._CACHED_FIELD_MAX_BYTES
