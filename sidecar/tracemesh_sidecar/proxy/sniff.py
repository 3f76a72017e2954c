"""Deciding from a connection's first bytes whether it speaks HTTP/1.x or HTTP/2 (and so can be traced)."""

from __future__ import annotations

import re
from typing import Final, Literal

Protocol = Literal["http1", "http2", "opaque", "undecided"]

# The HTTP/2 client connection preface (RFC 9113 section 3.4): h2c with prior knowledge starts with it.
HTTP2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# A request line: method token SP request-target SP HTTP/1.x CRLF (RFC 9112 section 3).
_REQUEST_LINE: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/1\.[0-9]\r?\n")
# The start of one: a long request target may arrive in several reads, and must still be parsed (and
# refused past the head limit) as HTTP rather than passed through unparsed.
_REQUEST_START: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ (?:/|\*|https?://)")
_TOKEN_START: Final = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# Past this many bytes without a newline, only what starts like a request line is still HTTP/1.
MAX_REQUEST_LINE: Final = 16384


def classify(first_bytes: bytes) -> Protocol:
    """`http1`, `http2` (the h2c preface), `opaque` (TLS ClientHello, ...) or `undecided` (need more bytes)."""
    if not first_bytes:
        return "undecided"
    if first_bytes[:1] == b"P" and HTTP2_PREFACE.startswith(first_bytes[:len(HTTP2_PREFACE)]):
        return "http2" if len(first_bytes) >= len(HTTP2_PREFACE) else "undecided"
    if first_bytes[0] not in _TOKEN_START:
        return "opaque"
    end = first_bytes.find(b"\n")
    if end < 0:
        if len(first_bytes) > MAX_REQUEST_LINE or not first_bytes.isascii():
            return "http1" if _REQUEST_START.match(first_bytes) else "opaque"
        return "undecided"
    return "http1" if _REQUEST_LINE.match(first_bytes, 0, end + 1) else "opaque"
