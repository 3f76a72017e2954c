"""HTTP/1.1 header handling for forwarding: hop-by-hop removal and building message heads.

Pure functions over the header list the proxy keeps per message: `(lowercase name, name as
received, value)`, names and values as bytes straight from the parser. The lowercase name
is a str because the tracing core speaks str; values stay bytes so the forwarded head is one
`bytes.join` of the pieces the parser handed us (no re-encoding on the hot path).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from http import HTTPStatus

Header = tuple[str, bytes, bytes]

# RFC 9110 section 7.6.1 plus the proxy-specific ones Envoy also strips.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "proxy-authorization", "proxy-authenticate",
})
CRLF = b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def hop_by_hop_names(headers: Iterable[Header]) -> frozenset[str]:
    """HOP_BY_HOP plus every header the message's own `Connection` header names."""
    extra: list[str] = []
    for lname, _, value in headers:
        if lname == "connection":
            for token in value.decode("latin-1").split(","):
                token = token.strip().lower()
                if token and token not in HOP_BY_HOP and token != "close":
                    extra.append(token)
    return HOP_BY_HOP.union(extra) if extra else HOP_BY_HOP


def header_fields(headers: Iterable[Header]) -> dict[str, str]:
    """Lowercase name -> value, repeated headers joined with ", " (what the tracing core reads)."""
    fields: dict[str, str] = {}
    for lname, _, value in headers:
        text = value.decode("latin-1")
        if lname in fields:
            fields[lname] = f"{fields[lname]}, {text}"
        else:
            fields[lname] = text
    return fields


def build_head(first_line: bytes, headers: Iterable[Header], drop: frozenset[str],
               extra: Sequence[tuple[str, str]], tail: bytes) -> bytes:
    """`first_line` (with CRLF), the headers not in `drop`, `extra`, then `tail` (extra raw lines + CRLF)."""
    parts = [first_line]
    for lname, name, value in headers:
        if lname not in drop:
            parts += (name, b": ", value, CRLF)
    for name_text, value_text in extra:
        parts += (name_text.encode("latin-1"), b": ", value_text.encode("latin-1"), CRLF)
    parts.append(tail)
    return b"".join(parts)


def status_line(status: int, reason: bytes) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, reason or reason_phrase(status))


def reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("latin-1")
    except ValueError:
        return b"Unknown"


def chunked(data: bytes) -> tuple[bytes, bytes, bytes]:
    """One chunk of chunked transfer coding, as pieces for `transport.writelines` (no copy of `data`)."""
    return (b"%x\r\n" % len(data), data, CRLF)


def local_reply(status: int, body: str, close: bool) -> bytes:
    """A complete response the proxy answers itself (Envoy's local replies: 503 UF, 504 UT, 400...)."""
    payload = body.encode()
    connection = b"connection: close\r\n" if close else b""
    return b"".join((status_line(status, b""), b"content-type: text/plain\r\ncontent-length: %d\r\n" % len(payload),
                     connection, CRLF, payload))
