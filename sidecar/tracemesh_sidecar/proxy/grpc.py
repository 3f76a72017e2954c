"""gRPC as Envoy's proxy treats it: the grpc-timeout header, and the local reply a gRPC client gets. Pure.

A local reply to a gRPC request (the proxy's own 503 when the upstream fails, 504 on its timeout, ...) is a
trailers-only response, as Envoy's Http::Utility::prepareLocalReply / encodeLocalReply build it
(source/common/http/utility.cc): one HEADERS frame ending the stream, `:status: 200`,
`content-type: application/grpc`, `grpc-status` mapped from the HTTP code (httpToGrpcStatus), and the body
text as a percent-encoded `grpc-message` when there is one; no content-length, no DATA.

What the span says about it: Envoy's ActiveStream::encodeHeaders (source/common/http/conn_manager_impl.cc)
takes the stream's response code from the `:status` it encodes, so the span's `http.status_code` is "200",
not the 503 the proxy meant; `grpc.status_code` carries the mapped code ("14" for a 503), and the span is an
error by the gRPC rule (UNAVAILABLE, UNKNOWN, ... tracing/grpc.py) and by its response flags. The proxy
therefore reports such a reply with ResponseFacts(status=200, grpc_status=..., grpc_message=...).
"""

from __future__ import annotations

import re
from typing import Final

from tracemesh_sidecar.tracing.grpc import GRPC_CONTENT_TYPE, is_grpc_request

__all__ = ["grpc_local_reply", "grpc_status_for_http", "grpc_timeout_s", "is_grpc_request"]

# TimeoutValue: "positive integer as ASCII string of at most 8 digits" (gRPC's PROTOCOL-HTTP2.md); Envoy parses
# it with absl::SimpleAtoi, which also takes surrounding ASCII whitespace and a sign (a negative is refused).
_TIMEOUT_VALUE: Final = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)[ \t\n\v\f\r]*")
_MAX_GRPC_TIMEOUT_VALUE: Final = 99_999_999  # Envoy's MAX_GRPC_TIMEOUT_VALUE
# Milliseconds per unit; Envoy rounds microseconds and nanoseconds up to the next whole millisecond.
_MS_PER_UNIT: Final = {"H": 3_600_000, "M": 60_000, "S": 1_000, "m": 1}
_PER_MS: Final = {"u": 1_000, "n": 1_000_000}

# Envoy's Grpc::Utility::httpToGrpcStatus (source/common/grpc/status.cc), after gRPC's
# http-grpc-status-mapping.md; every other HTTP code is UNKNOWN (2).
_GRPC_STATUS_FOR_HTTP: Final = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}
_UNKNOWN: Final = 2


def grpc_timeout_s(value: str) -> float | None:
    """The deadline a grpc-timeout header value asks for, in seconds, as Envoy's Grpc::Common::getGrpcTimeout
    (source/common/grpc/common.cc) reads it: None for a malformed value (Envoy then ignores the header)."""
    if not value:
        return None
    match = _TIMEOUT_VALUE.fullmatch(value[:-1])
    if match is None:
        return None
    amount = int(match.group(2))
    if (match.group(1) == "-" and amount != 0) or amount > _MAX_GRPC_TIMEOUT_VALUE:
        return None
    unit = value[-1]
    if unit in _MS_PER_UNIT:
        return amount * _MS_PER_UNIT[unit] / 1000
    if unit in _PER_MS:
        return -(-amount // _PER_MS[unit]) / 1000  # ceiling division: whole milliseconds, rounded up
    return None


def grpc_status_for_http(status: int) -> int:
    """The gRPC status code standing for an HTTP status code, as Envoy's Grpc::Utility::httpToGrpcStatus."""
    return _GRPC_STATUS_FOR_HTTP.get(status, _UNKNOWN)


def grpc_local_reply(status: int, body: str) -> list[tuple[bytes, bytes]]:
    """The HTTP/2 header block (sent with END_STREAM: a trailers-only response) of the proxy's local reply
    `status` with text `body` to a gRPC request, as Envoy's prepareLocalReply builds it (module docstring:
    the span then reports http.status_code "200")."""
    block = [
        (b":status", b"200"),
        (b"content-type", GRPC_CONTENT_TYPE.encode("ascii")),
        (b"grpc-status", str(grpc_status_for_http(status)).encode("ascii")),
    ]
    if body:
        block.append((b"grpc-message", _percent_encode(body.encode("utf-8"))))
    return block


def _percent_encode(message: bytes) -> bytes:
    """gRPC's grpc-message encoding (PROTOCOL-HTTP2.md "Responses") as Envoy's PercentEncoding::encode writes
    it: every byte outside 0x20-0x7D (so also '~', DEL and all of UTF-8's non-ASCII bytes) and '%' as `%XX`."""
    return b"".join(bytes((byte,)) if 0x20 <= byte < 0x7E and byte != 0x25 else b"%%%02X" % byte
                    for byte in message)
