"""proxy/grpc.py against the Envoy tests it follows.

test/common/grpc/common_test.cc (GrpcContextTest.GetGrpcTimeout, .HttpToGrpcStatus, .HasGrpcContentType) and
test/common/http/utility_test.cc (HttpUtility.SendLocalGrpcReply, .SendLocalGrpcReplyWithUpstreamJsonPayload,
.RateLimitedGrpcStatus; PercentEncoding.EncodeDecode).
"""

from __future__ import annotations

import pytest

from tracemesh_sidecar.proxy.grpc import grpc_local_reply, grpc_status_for_http, grpc_timeout_s, is_grpc_request

# GrpcContextTest.GetGrpcTimeout: Envoy's milliseconds, here in seconds.
GET_GRPC_TIMEOUT = [
    ("", None),  # empty_grpc_timeout
    ("123", None),  # missing_unit
    ("1", None),  # small_missing_unit
    ("123F", None),  # illegal_unit
    ("0H", 0.0),
    ("1H", 3600.0),
    ("1M", 60.0),
    ("1S", 1.0),
    ("12345678m", 12345.678),
    ("1000001u", 1.001),  # rounded up to a whole millisecond
    ("12345678n", 0.013),
    ("6666666666666H", None),  # more than 8 digits: value_overflow
    ("-1S", None),  # value_negative
    ("+1S", 1.0),  # value_positive
]


@pytest.mark.parametrize(("value", "seconds"), GET_GRPC_TIMEOUT,
                         ids=[value or "empty" for value, _ in GET_GRPC_TIMEOUT])
def test_grpc_timeout_common_test_GetGrpcTimeout(value: str, seconds: float | None) -> None:
    assert grpc_timeout_s(value) == seconds


@pytest.mark.parametrize(("value", "seconds"), [
    ("99999999S", 99999999.0),  # the largest TimeoutValue
    ("100000000S", None),
    ("1u", 0.001), ("1000u", 0.001), ("1n", 0.001), ("0n", 0.0),
    ("10s", None),  # units are case-sensitive: 's' is none of them
    ("1.5S", None), ("S", None), ("1 S", 1.0),
])
def test_grpc_timeout_edges(value: str, seconds: float | None) -> None:
    assert grpc_timeout_s(value) == seconds


# GrpcContextTest.HttpToGrpcStatus, plus the default branch for codes it does not list.
@pytest.mark.parametrize(("http", "grpc"), [
    (400, 13), (401, 16), (403, 7), (404, 12), (429, 14), (502, 14), (503, 14), (504, 14), (500, 2),
    (413, 2), (408, 2), (200, 2),
])
def test_grpc_status_for_http_common_test_HttpToGrpcStatus(http: int, grpc: int) -> None:
    assert grpc_status_for_http(http) == grpc


@pytest.mark.parametrize(("content_type", "grpc"), [
    (None, False), ("", False), ("application/text", False), ("application/grpc", True),
    ("application/grpc+", True), ("application/grpc+foo", True), ("application/grpc-", False),
    ("application/grpc-web", False), ("application/grpc-web+foo", False),
])
def test_is_grpc_request_common_test_HasGrpcContentType(content_type: str | None, grpc: bool) -> None:
    assert is_grpc_request(content_type) is grpc


def test_local_reply_utility_test_SendLocalGrpcReply() -> None:
    """A 413 "large": a trailers-only 200 with grpc-status UNKNOWN and the text as grpc-message."""
    assert grpc_local_reply(413, "large") == [
        (b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"2"),
        (b"grpc-message", b"large"),
    ]


def test_local_reply_without_body_has_no_message_utility_test_RateLimitedGrpcStatus() -> None:
    assert grpc_local_reply(429, "") == [
        (b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"14"),
    ]


def test_local_reply_message_is_percent_encoded_utility_test_SendLocalGrpcReplyWithUpstreamJsonPayload() -> None:
    """The JSON body of Envoy's test, encoded as PercentEncoding.EncodeDecode expects."""
    json = '\n{\n    "error": {\n        "code": 401,\n        "message": "Unauthorized"\n    }\n}\n  '
    block = dict(grpc_local_reply(401, json))
    assert block[b"grpc-status"] == b"16"
    assert block[b"grpc-message"] == (b'%0A{%0A    "error": {%0A        "code": 401,%0A   '
                                      b'     "message": "Unauthorized"%0A    }%0A}%0A  ')


@pytest.mark.parametrize(("body", "encoded"), [
    ("too large", b"too large"), ("_-ok-_", b"_-ok-_"),  # PercentEncoding.EncodeDecode
    ("100%", b"100%25"), ("a~b", b"a%7Eb"), ("tab\there", b"tab%09here"), ("\x7f", b"%7F"),
    ("caf\u00e9", b"caf%C3%A9"),  # UTF-8 bytes, each encoded (gRPC's PROTOCOL-HTTP2.md)
    ("upstream connect error or disconnect/reset before headers. reset reason: connection failure",
     b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"),
])
def test_local_reply_message_encoding(body: str, encoded: bytes) -> None:
    assert dict(grpc_local_reply(503, body))[b"grpc-message"] == encoded
