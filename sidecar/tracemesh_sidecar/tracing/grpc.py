"""Which requests are gRPC, and when a gRPC status marks a span as an error: Envoy's rules, pure.

The tracing core needs both to tag a span as Envoy's tracers do; the proxy needs the first to shape its local
replies (proxy/grpc.py re-exports it), which is why this lives in the core the proxy may import and not the
other way round (.importlinter: the cores never import the proxy).
"""

from __future__ import annotations

import re
from typing import Final, TypeGuard

GRPC_CONTENT_TYPE: Final = "application/grpc"
GRPC_STATUS: Final = "grpc-status"  # the response header (or trailer) carrying a gRPC status code
GRPC_STATUS_BYTES: Final = b"grpc-status"
_SUFFIX_AT: Final = len(GRPC_CONTENT_TYPE)

# absl::SimpleAtoi into an unsigned integer, as Envoy's Grpc::Common::getGrpcStatus parses grpc-status:
# surrounding ASCII whitespace and a leading '+' are accepted, a '-' is not.
_UNSIGNED: Final = re.compile(r"[ \t\n\v\f\r]*\+?([0-9]+)[ \t\n\v\f\r]*")

# The codes Envoy counts as the server's fault (source/common/tracing/http_tracer_impl.cc addGrpcResponseTags,
# after envoy issue 18877): UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL,
# UNAVAILABLE, DATA_LOSS. OK and the client-side codes (CANCELLED, INVALID_ARGUMENT, NOT_FOUND,
# ALREADY_EXISTS, PERMISSION_DENIED, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, UNAUTHENTICATED) do not
# make a span an error, nor does a grpc-status that is not a number from 0 to 16 (Envoy's InvalidCode).
_SERVER_ERROR_CODES: Final = frozenset({2, 4, 8, 12, 13, 14, 15})


def is_grpc_request(content_type: str | None) -> TypeGuard[str]:
    """Envoy's Grpc::Common::hasGrpcContentType (source/common/grpc/common.cc): `application/grpc` exactly, or
    `application/grpc+<subtype>`; `application/grpc-web` and `application/grpc;...` are not gRPC."""
    return (content_type is not None and content_type.startswith(GRPC_CONTENT_TYPE)
            and (len(content_type) == _SUFFIX_AT or content_type[_SUFFIX_AT] == "+"))


def is_grpc_server_error(grpc_status: str) -> bool:
    """Whether a response's grpc-status value sets the span's `error` tag, as Envoy's addGrpcResponseTags."""
    match = _UNSIGNED.fullmatch(grpc_status)
    return match is not None and int(match.group(1)) in _SERVER_ERROR_CODES
