"""Sampling by `x-request-id`, as Envoy's default UUID request-id extension does it.

Envoy packs the tracing decision into the request id it forwards: the UUID's 15th character
(index 14, `4` in a fresh UUID4) becomes `9` (sampled), `a` (forced) or `b` (client-forced).
A hop whose incoming request id carries one of them traces the request without rolling again;
otherwise an `x-client-trace-id` header forces it (Istio's client sampling is 100%), else the id's
first 8 hex digits modulo 10000 are compared with the percentage in hundredths, so every proxy
that sees the same request id takes the same decision. An id whose first 8 characters are not hex
is never sampled. Followed: source/extensions/request_id/uuid/config.{h,cc} and
ConnectionManagerUtility::mutateTracingRequestHeader (source/common/http/conn_manager_utility.cc).

`x-envoy-force-trace` is honoured by Envoy for internal requests only, and a sidecar never sees
one: Istio's sidecar listeners do not use the remote address and Envoy >= 1.33 trusts no address
by default, so cleanInternalHeaders strips the header before the decision (see hop.py).
"""

from __future__ import annotations

from typing import Final

from tracemesh_sidecar.tracing.ids import random_hex, uuid_text

REQUEST_ID: Final = "x-request-id"
CLIENT_TRACE_ID: Final = "x-client-trace-id"
FORCE_TRACE: Final = "x-envoy-force-trace"

_UUID_LENGTH: Final = 36
_TRACE_BYTE: Final = 14
_SAMPLED: Final = "9"
_CLIENT_FORCED: Final = "b"
_TRACED: Final = frozenset({_SAMPLED, "a", _CLIENT_FORCED})  # "a": forced by x-envoy-force-trace upstream
_UUID4: Final = "4"  # the version digit where no trace reason is packed
_MODULUS: Final = 10000  # Envoy modBy(..., 10000): hundredths of a percent, so a numerator of 10000 samples all


def sampling_numerator(percentage: float) -> int:
    """A 0-100 percentage as Envoy's random_sampling: hundredths of a percent, rounded (0-10000)."""
    return int(percentage * 100.0 + 0.5)


def decide_by_request_id(request_id: str, client_trace_id: bool, numerator: int) -> tuple[bool, str]:
    """(traced, the request id to forward, with the decision packed into it when it is a UUID)."""
    if len(request_id) < 8:
        return False, request_id
    try:
        value = int(request_id[:8], 16)
    except ValueError:
        return False, request_id
    packs = len(request_id) == _UUID_LENGTH
    if packs and request_id[_TRACE_BYTE] in _TRACED:
        return True, request_id
    if client_trace_id:
        reason = _CLIENT_FORCED
    elif value % _MODULUS < numerator:
        reason = _SAMPLED
    else:
        return False, request_id
    if packs:
        request_id = f"{request_id[:_TRACE_BYTE]}{reason}{request_id[_TRACE_BYTE + 1:]}"
    return True, request_id


def new_decided_request_id(client_trace_id: bool, numerator: int) -> tuple[bool, str]:
    """A new request id and the decision on it: what decide_by_request_id gives for a new UUID4, with the id
    written once, its trace reason in place (a third of the instructions of writing it and writing it again)."""
    digits = random_hex(32)
    if client_trace_id:
        reason = _CLIENT_FORCED
    elif numerator >= _MODULUS or int(digits[:8], 16) % _MODULUS < numerator:  # at 100%, any id: no digits read
        reason = _SAMPLED
    else:
        return False, uuid_text(digits, _UUID4)
    return True, uuid_text(digits, reason)


def without_trace_reason(request_id: str) -> str:
    """The request id as its first proxy received or made it: a packed trace reason back to UUID4's `4`
    (what a client that sent the id finds it by in the spans' `guid:x-request-id`)."""
    if len(request_id) == _UUID_LENGTH and request_id[_TRACE_BYTE] in _TRACED:
        return f"{request_id[:_TRACE_BYTE]}{_UUID4}{request_id[_TRACE_BYTE + 1:]}"
    return request_id
