"""One unary gRPC call's wire details, the pure parts: framing, `grpc-timeout`, the status and its retry verdict.

Followed: gRPC's PROTOCOL-HTTP2.md (Length-Prefixed-Message, `grpc-timeout`, Trailers-Only, percent-encoded
`grpc-message`, `grpc-status-details-bin`), gRPC's http-grpc-status-mapping.md (an HTTP status without
`grpc-status`), and the OTLP specification's "OTLP/gRPC Response" (which codes may be retried, RESOURCE_EXHAUSTED
only with a RetryInfo, partial success).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from urllib.parse import unquote

EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
CONTENT_TYPE = "application/grpc"
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"


class StatusCode(IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# The OTLP specification's retryable codes; RESOURCE_EXHAUSTED joins them only when the server sent a RetryInfo.
RETRYABLE_CODES = frozenset({StatusCode.CANCELLED, StatusCode.DEADLINE_EXCEEDED, StatusCode.ABORTED,
                             StatusCode.OUT_OF_RANGE, StatusCode.UNAVAILABLE, StatusCode.DATA_LOSS})
# http-grpc-status-mapping.md: what a client makes of an HTTP status that came without grpc-status.
_FROM_HTTP_STATUS = {400: StatusCode.INTERNAL, 401: StatusCode.UNAUTHENTICATED, 403: StatusCode.PERMISSION_DENIED,
                     404: StatusCode.UNIMPLEMENTED, 429: StatusCode.UNAVAILABLE, 502: StatusCode.UNAVAILABLE,
                     503: StatusCode.UNAVAILABLE, 504: StatusCode.UNAVAILABLE}
_TIMEOUT_DIGITS = 8  # TimeoutValue is at most 8 ASCII digits


class GrpcWireError(ValueError):
    """A response that does not follow the gRPC wire protocol."""


@dataclass(frozen=True, slots=True)
class RpcStatus:
    code: StatusCode
    message: str = ""
    retry_delay_s: float | None = None  # from a google.rpc.RetryInfo in grpc-status-details-bin

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES or (
            self.code == StatusCode.RESOURCE_EXHAUSTED and self.retry_delay_s is not None)

    def describe(self) -> str:
        return f"gRPC {self.code.name}: {self.message or '(no message)'}"


def encode_timeout(seconds: float) -> str:
    """`grpc-timeout` for a deadline `seconds` away: whole milliseconds (rounded up), or seconds past 8 digits."""
    milliseconds = max(1, math.ceil(seconds * 1000))
    if len(str(milliseconds)) <= _TIMEOUT_DIGITS:
        return f"{milliseconds}m"
    return f"{min(math.ceil(seconds), 10 ** _TIMEOUT_DIGITS - 1)}S"


def request_headers(authority: str, timeout_s: float, metadata: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """The HEADERS of an OTLP Export call; metadata keys are lowercased, as HTTP/2 requires."""
    return [
        (":method", "POST"), (":scheme", "http"), (":path", EXPORT_PATH), (":authority", authority),
        ("content-type", CONTENT_TYPE), ("te", "trailers"), ("grpc-timeout", encode_timeout(timeout_s)),
        ("user-agent", "tracemesh-sidecar"),
        *((name.lower(), value) for name, value in metadata),
    ]


def frame(message: bytes) -> bytes:
    """A Length-Prefixed-Message: uncompressed flag, 4-byte big-endian length, the message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def unframe(data: bytes) -> bytes:
    """The one message of a unary response body; raises GrpcWireError when it is not one well-formed message."""
    if not data:
        return b""  # no message: the empty response
    if len(data) < 5:
        raise GrpcWireError(f"response body of {len(data)} bytes is shorter than a message prefix")
    if data[0] != 0:
        raise GrpcWireError("response message is compressed though no grpc-accept-encoding was offered")
    length = int.from_bytes(data[1:5], "big")
    if len(data) != 5 + length:
        raise GrpcWireError(f"response body holds {len(data) - 5} bytes after a prefix announcing {length}")
    return data[5:]


def response_status(http_status: int, headers: Mapping[str, str]) -> RpcStatus:
    """The call's status from the response headers and trailers taken together (a Trailers-Only response
    has only headers); an HTTP error without grpc-status is mapped as http-grpc-status-mapping.md says."""
    text = headers.get("grpc-status")
    if text is None:
        if http_status != 200:
            code = _FROM_HTTP_STATUS.get(http_status, StatusCode.UNKNOWN)
            return RpcStatus(code, f"HTTP {http_status} without grpc-status")
        return RpcStatus(StatusCode.UNKNOWN, "the response ended without grpc-status")
    try:
        code = StatusCode(int(text))
    except ValueError:
        return RpcStatus(StatusCode.UNKNOWN, f"grpc-status {text!r} is not a status code")
    message = unquote(headers.get("grpc-message", ""), errors="replace")
    return RpcStatus(code, message, retry_delay(headers.get("grpc-status-details-bin")))


def retry_delay(details_bin: str | None) -> float | None:
    """The RetryInfo.retry_delay in a `grpc-status-details-bin` (a base64 google.rpc.Status), in seconds."""
    if not details_bin:
        return None
    try:
        status = base64.b64decode(details_bin + "=" * (-len(details_bin) % 4))
        for number, value in _fields(status):
            if number != 3 or not isinstance(value, bytes):  # Status.details: repeated google.protobuf.Any
                continue
            any_fields = dict(_fields(value))
            if any_fields.get(1) == RETRY_INFO_TYPE.encode():
                return _retry_info_delay(any_fields.get(2, b""))
    except (binascii.Error, GrpcWireError):
        return None  # unreadable details: as if there were none
    return None


def _retry_info_delay(retry_info: object) -> float:
    if not isinstance(retry_info, bytes):
        raise GrpcWireError("RetryInfo is not a message")
    duration = dict(_fields(dict(_fields(retry_info)).get(1, b"")))  # RetryInfo.retry_delay: Duration
    seconds, nanos = duration.get(1, 0), duration.get(2, 0)
    if not isinstance(seconds, int) or not isinstance(nanos, int):
        raise GrpcWireError("RetryInfo.retry_delay is not a Duration")
    return max(0.0, seconds + nanos / 1e9)


def _fields(data: object) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as int, length-delimited fields as bytes."""
    if not isinstance(data, bytes):
        raise GrpcWireError("expected a message")
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _varint(data, position)
            yield number, value
        elif wire_type == 2:
            length, position = _varint(data, position)
            if position + length > len(data):
                raise GrpcWireError("truncated field")
            yield number, data[position:position + length]
            position += length
        elif wire_type in (1, 5):
            position += 8 if wire_type == 1 else 4  # fixed64/fixed32: nothing here needs them
        else:
            raise GrpcWireError(f"unsupported wire type {wire_type}")


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while position < len(data):
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
    raise GrpcWireError("truncated varint")
