"""The pure parts of a unary gRPC call: framing, grpc-timeout, the status of an answer and the OTLP retry verdict."""

from __future__ import annotations

import base64

import pytest
from collector_double import retry_info_status

from tracemesh_sidecar.export.grpc_wire import (
    GrpcWireError,
    RpcStatus,
    StatusCode,
    encode_timeout,
    frame,
    request_headers,
    response_status,
    retry_delay,
    unframe,
)

# The OTLP specification's table ("OTLP/gRPC Response", failures): which codes a client may retry.
OTLP_RETRYABLE = {"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"}


@pytest.mark.parametrize("code", [code for code in StatusCode if code != StatusCode.OK])
def test_retryable_codes_are_the_otlp_specifications(code: StatusCode) -> None:
    assert RpcStatus(code).retryable is (code.name in OTLP_RETRYABLE)


def test_resource_exhausted_is_retryable_only_with_retry_info() -> None:
    assert not RpcStatus(StatusCode.RESOURCE_EXHAUSTED).retryable
    assert RpcStatus(StatusCode.RESOURCE_EXHAUSTED, retry_delay_s=0.0).retryable


@pytest.mark.parametrize(("seconds", "header"), [
    (5.0, "5000m"), (0.5, "500m"), (0.0001, "1m"), (0.0, "1m"), (1.0001, "1001m"), (99_999.999, "99999999m"),
    (100_000.0, "100000S"), (10.0 ** 9, "99999999S"),
])
def test_grpc_timeout_has_at_most_eight_digits_and_never_shortens_the_deadline(seconds: float, header: str) -> None:
    assert encode_timeout(seconds) == header


def test_request_headers_carry_the_method_deadline_and_lowercased_metadata() -> None:
    headers = request_headers("jaeger-collector.istio-system.svc.cluster.local:4317", 5.0,
                              (("Authorization", "Bearer token"), ("x-tenant", "a")))
    assert headers[:4] == [(":method", "POST"), (":scheme", "http"),
                           (":path", "/opentelemetry.proto.collector.trace.v1.TraceService/Export"),
                           (":authority", "jaeger-collector.istio-system.svc.cluster.local:4317")]
    assert len(dict(headers)) == len(headers)  # no header twice
    named = dict(headers)
    assert (named["content-type"], named["te"], named["grpc-timeout"]) == ("application/grpc", "trailers", "5000m")
    assert (named["authorization"], named["x-tenant"]) == ("Bearer token", "a")


def test_frame_and_unframe() -> None:
    assert frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert unframe(frame(b"abc")) == b"abc"
    assert unframe(b"") == b""  # no message at all: an empty response


@pytest.mark.parametrize(("data", "problem"), [
    (b"\x00\x00\x00", "shorter than a message prefix"),
    (b"\x01\x00\x00\x00\x01x", "compressed"),
    (b"\x00\x00\x00\x00\x05abc", "announcing 5"),
])
def test_unframe_rejects_what_is_not_one_message(data: bytes, problem: str) -> None:
    with pytest.raises(GrpcWireError, match=problem):
        unframe(data)


def test_status_from_trailers_with_percent_encoded_message() -> None:
    status = response_status(200, {":status": "200", "grpc-status": "3", "grpc-message": "bad%20span%3A%20%C3%A9"})
    assert status == RpcStatus(StatusCode.INVALID_ARGUMENT, "bad span: é")
    assert status.describe() == "gRPC INVALID_ARGUMENT: bad span: é"


def test_ok_status() -> None:
    assert response_status(200, {"grpc-status": "0"}).code == StatusCode.OK


@pytest.mark.parametrize(("http_status", "code"), [
    (400, StatusCode.INTERNAL), (401, StatusCode.UNAUTHENTICATED), (403, StatusCode.PERMISSION_DENIED),
    (404, StatusCode.UNIMPLEMENTED), (429, StatusCode.UNAVAILABLE), (502, StatusCode.UNAVAILABLE),
    (503, StatusCode.UNAVAILABLE), (504, StatusCode.UNAVAILABLE), (500, StatusCode.UNKNOWN),
])
def test_http_status_without_grpc_status_is_mapped_as_grpc_says(http_status: int, code: StatusCode) -> None:
    """gRPC's http-grpc-status-mapping.md: e.g. a proxy answering 503 in front of the collector."""
    assert response_status(http_status, {"content-type": "text/plain"}).code == code


def test_missing_or_garbled_grpc_status_is_unknown() -> None:
    assert response_status(200, {}).code == StatusCode.UNKNOWN
    assert response_status(200, {"grpc-status": "OK"}).code == StatusCode.UNKNOWN
    assert response_status(200, {"grpc-status": "99"}).code == StatusCode.UNKNOWN


@pytest.mark.parametrize("padded", [True, False])
def test_retry_info_is_read_from_status_details(padded: bool) -> None:
    encoded = base64.b64encode(retry_info_status(1.25)).decode()
    if not padded:  # gRPC sends binary metadata base64 without padding
        encoded = encoded.rstrip("=")
    assert retry_delay(encoded) == pytest.approx(1.25)
    status = response_status(200, {"grpc-status": "8", "grpc-status-details-bin": encoded})
    assert status.retryable and status.retry_delay_s == pytest.approx(1.25)


@pytest.mark.parametrize("details", [None, "", "!!!not base64", base64.b64encode(b"\x1a\x05abc").decode(),
                                     base64.b64encode(b"\x08\x08\x12\x03abc").decode()])
def test_details_without_a_readable_retry_info_give_no_delay(details: str | None) -> None:
    assert retry_delay(details) is None
