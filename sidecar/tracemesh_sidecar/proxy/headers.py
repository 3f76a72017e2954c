"""HTTP/1.1 header handling for forwarding: hop-by-hop removal and building message heads.

Pure functions over the header list the proxy keeps per message: `(lowercase name, name as
received, value)`, names and values as bytes straight from the parser. The lowercase name
is a str because the tracing core speaks str; values stay bytes so the forwarded head is one
`bytes.join` of the pieces the parser handed us (no re-encoding on the hot path).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

from tracemesh_sidecar.native_dataclasses import rebuilt_from_fields

Header = tuple[str, bytes, bytes]

CONNECTION: Final = "connection"
HTTP_11: Final = "1.1"  # the version as httptools' get_http_version() gives it
# RFC 9110 section 7.6.1 plus the proxy-specific ones Envoy also strips.
HOP_BY_HOP: Final = frozenset({
    CONNECTION, "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "proxy-authorization", "proxy-authenticate",
})
CRLF: Final = b"\r\n"
# Envoy's defaults for a message head (max_request_headers_kb, max_headers_count), requests and
# responses alike: URL, header names and values count, as in Envoy's header map byte size.
MAX_HEAD_BYTES: Final = 60 * 1024
MAX_HEADERS: Final = 100
LAST_CHUNK: Final = b"0\r\n\r\n"


def hop_by_hop_names(connection: str | None) -> frozenset[str]:
    """HOP_BY_HOP plus every header a request's `Connection` header value (joined, lowercase) names."""
    if not connection:
        return HOP_BY_HOP
    extra = [token for token in (part.strip() for part in connection.lower().split(","))
             if token and token not in HOP_BY_HOP and token != "close"]
    return HOP_BY_HOP.union(extra) if extra else HOP_BY_HOP


def offers_only_h2c(headers: Iterable[Header]) -> bool:
    """The request's Upgrade header offers h2c and nothing else (`curl --http2` on an http:// URL)."""
    offers = [token.strip().lower() for lname, _, value in headers if lname == "upgrade" for token in value.split(b",")]
    return bool(offers) and all(offer == b"h2c" for offer in offers)


def stand_in_head(headers: Iterable[Header]) -> bytes:
    """A request head framing a body as `headers` do: for the parser to read the body of a request it took
    for an upgrade (llhttp ends such a request at its head)."""
    framing = [b"%s: %s\r\n" % (name, value) for lname, name, value in headers
               if lname in ("content-length", "transfer-encoding")]
    return b"".join((b"PUT / HTTP/1.1\r\n", *framing, CRLF))


_DROP_CACHE: Final[dict[tuple[frozenset[str], frozenset[str], tuple[str, ...], frozenset[str]], frozenset[str]]] = {}


def forward_drop(base: frozenset[str], remove: frozenset[str], replaced: tuple[str, ...],
                 also: frozenset[str] = frozenset()) -> frozenset[str]:
    """`base` | `remove` | `replaced` | `also`, memoized: the same few combinations recur on every request."""
    key = (base, remove, replaced, also)
    drop = _DROP_CACHE.get(key)
    if drop is None:
        drop = base.union(remove, (name.lower() for name in replaced), also)
        if len(_DROP_CACHE) < 4096:
            _DROP_CACHE[key] = drop
    return drop


_HOP_BY_HOP_BYTES: Final = frozenset(name.encode() for name in HOP_BY_HOP)


# Built once per response: its own `__init__`, which mypyc compiles (a NamedTuple's is interpreted Python, as is the
# one @dataclass generates), and rebuilt from its fields for copy and pickle (native_dataclasses.py).
@dataclass(slots=True)
class ResponseHeaders:
    lines: bytes  # the end-to-end header lines, each with CRLF, in the order received
    chunked: bool  # Transfer-Encoding: chunked
    has_length: bool  # Content-Length present (and not overridden by chunked)
    taken: list[tuple[bytes, bytes]] | None = None  # the headers of TakenNames (lowercase name, value), if any

    def __init__(self, lines: bytes, chunked: bool, has_length: bool,
                 taken: list[tuple[bytes, bytes]] | None = None) -> None:
        self.lines = lines
        self.chunked = chunked
        self.has_length = has_length
        self.taken = taken

    def __reduce__(self) -> tuple[type[Any], tuple[object, ...]]:
        return rebuilt_from_fields(self)


_PLAIN_CONNECTION: Final = frozenset({b"keep-alive", b"close"})
_CONTENT_LENGTH: Final = b"content-length"


def length_flags(names: Iterable[bytes]) -> bytes:
    """A byte per name length up to the longest of `names`, 1 where one of them has that length: for
    `has_a_length_of(flags, name)`, which tells most names apart from all of `names` without lowering them."""
    names = tuple(names)
    flags = bytearray(max(len(name) for name in names) + 1)
    for name in names:
        flags[len(name)] = 1
    return bytes(flags)


def has_a_length_of(flags: bytes, name: bytes) -> bool:
    """Whether some name of `flags` (length_flags) is as long as `name`. Compiled, a byte read; a frozenset of the
    lengths is a hash lookup of a boxed int (callgrind: ~150 instructions, for every header of every response)."""
    length = len(name)
    return length < len(flags) and flags[length] != 0


class TakenNames:
    """Lowercase header names `response_headers` takes out of a response and gives back apart (the metadata
    exchange's), with the length table of every name it looks at: theirs, the hop-by-hop ones and content-length."""

    def __init__(self, names: Iterable[bytes]) -> None:
        self.names = frozenset(names)
        self.lengths = length_flags((*_HOP_BY_HOP_BYTES, _CONTENT_LENGTH, *self.names))


NO_TAKEN_NAMES: Final = TakenNames(())


def response_headers(headers: list[tuple[bytes, bytes]], keep_upgrade: bool = False,
                     take: TakenNames = NO_TAKEN_NAMES) -> ResponseHeaders:
    """Filter a response's raw headers in one pass (hot path: bytes only, no per-header decoding), taking out
    those `take` names.

    Only the rare response whose Connection header names further headers, or that has both
    Content-Length and chunked coding, takes a second pass.
    """
    parts: list[bytes] = []
    chunked = has_length = False
    named: set[bytes] | None = None
    taken: list[tuple[bytes, bytes]] | None = None
    lengths = take.lengths
    for name, value in headers:
        if has_a_length_of(lengths, name):  # most names (Date, Server, Content-Type): passed on unlowered
            lname = lowered_bytes(name)
            if lname in _HOP_BY_HOP_BYTES:
                if lname == b"transfer-encoding":
                    chunked = chunked or b"chunked" in value.lower()
                elif lname == b"connection" and value not in _PLAIN_CONNECTION:  # as sent, then lowered
                    tokens = value.lower()
                    if tokens not in _PLAIN_CONNECTION:
                        named = named or set()
                        named.update(token.strip() for token in tokens.split(b","))
                elif keep_upgrade and lname == b"upgrade":
                    _add_line(parts, name, value)
                continue
            if lname == _CONTENT_LENGTH:
                has_length = True
            elif lname in take.names:
                if taken is None:
                    taken = []
                taken.append((lname, value))
                continue
        _add_line(parts, name, value)
    if named or (chunked and has_length):
        drop = set(_HOP_BY_HOP_BYTES).union(named or (), take.names)
        if keep_upgrade:
            drop.discard(b"upgrade")
        if chunked:
            drop.add(b"content-length")
        parts = []
        for name, value in headers:
            if name.lower() not in drop:
                _add_line(parts, name, value)
        has_length = has_length and not chunked
    return ResponseHeaders(b"".join(parts), chunked, has_length, taken)


def _add_line(parts: list[bytes], name: bytes, value: bytes) -> None:
    """The header's line as one piece: compiled, the formatting is one allocation and the pieces' copies (mypyc's
    CPyBytes_Build), where four pieces cost four appends and, in the head's join, a buffer each (callgrind)."""
    parts.append(b"%s: %s\r\n" % (name, value))


# Each header name as received -> its lowercase text and bytes, for the names that recur (a client or an upstream
# sends the same few on every message): found where decoding and lowering make two objects a header, and the cached
# objects keep their hash, so a header's dict insert and set tests do not hash it again (callgrind: ~2k instructions
# a request of four headers). Kept by length, each length's names compared in turn: a dict keyed by the name hashes
# the parser's new bytes object on every lookup (callgrind: ~450 instructions a header, ~11 headers a request from
# a peer sidecar), where the names of one length are few and a comparison stops at the first byte that differs.
# Bounded, since names are the peer's: names of up to 64 bytes (the standard ones are under 40), at most 16 of
# each length (its own names beside the standard ones), so no lookup compares more than 16 names; any other name
# is lowered anew.
_LOWERED_NAME_MAX: Final = 64
_LOWERED_PER_LENGTH: Final = 16
_LOWERED: Final[list[list[tuple[bytes, str, bytes]]]] = [[] for _ in range(_LOWERED_NAME_MAX + 1)]


def _lowered(name: bytes) -> tuple[bytes, str, bytes]:
    """(`name`, its lowercase text, its lowercase bytes), from the cache when there."""
    length = len(name)
    if length > _LOWERED_NAME_MAX:
        return name, name.decode("latin-1").lower(), name.lower()
    known = _LOWERED[length]
    for entry in known:
        if entry[0] == name:
            return entry
    entry = (name, name.decode("latin-1").lower(), name.lower())
    if len(known) < _LOWERED_PER_LENGTH:
        known.append(entry)
    return entry


def lowered_name(name: bytes) -> str:
    """A header name as text, lowercased."""
    return _lowered(name)[1]


def lowered_bytes(name: bytes) -> bytes:
    """A header name's bytes, ASCII letters lowercased (as `bytes.lower`)."""
    return _lowered(name)[2]


def header_fields(headers: list[Header]) -> dict[str, str]:
    """Lowercase name -> value, repeated headers joined with ", " (what the tracing core reads)."""
    fields = {lname: value.decode("latin-1") for lname, _, value in headers}
    if len(fields) == len(headers):  # no name twice (most requests): no lookup per header to join repeated ones
        return fields
    fields = {}
    for lname, _, value in headers:
        text = value.decode("latin-1")
        if lname in fields:
            fields[lname] = f"{fields[lname]}, {text}"
        else:
            fields[lname] = text
    return fields


def build_head(first_line: bytes, headers: list[Header], drop: frozenset[str],
               extra: Sequence[tuple[str, str]], tail: bytes) -> bytes:
    """`first_line` (with CRLF), the headers not in `drop`, `extra`, then `tail` (extra raw lines + CRLF)."""
    parts = [first_line]
    for lname, name, value in headers:
        if lname not in drop:
            _add_line(parts, name, value)
    if extra:
        # One text, joined and encoded once: two encodes and four pieces of the bytes' join a header cost ~2.5x as
        # much, and an f-string per header as much again (callgrind).
        texts: list[str] = []
        for name_text, value_text in extra:
            texts.append(name_text)
            texts.append(": ")
            texts.append(value_text)
            texts.append("\r\n")
        parts.append("".join(texts).encode("latin-1"))
    parts.append(tail)
    return b"".join(parts)


_STATUS_LINES: Final[dict[int, bytes]] = {}


def status_line(status: int) -> bytes:
    """`HTTP/1.1 200 OK\\r\\n` with the standard reason phrase; each line is built once."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status))
    return line


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
    return b"".join((status_line(status), b"content-type: text/plain\r\ncontent-length: %d\r\n" % len(payload),
                     connection, CRLF, payload))


def h2c_upgrade_headers(method: bytes, target: bytes,
                        headers: Sequence[Header]) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    """An `Upgrade: h2c` request as stream 1 of the HTTP/2 connection it asks for: (its HTTP2-Settings, its headers
    as HTTP/2's, pseudo-headers first), or None when it cannot be (no or several HTTP2-Settings, a body, an
    absolute-form target)."""
    settings = [value for lname, _, value in headers if lname == "http2-settings"]
    if len(settings) != 1 or not target.startswith(b"/"):
        return None
    authority = b""
    regular: list[tuple[bytes, bytes]] = []
    for lname, _, value in headers:
        if lname == "transfer-encoding" or (lname == "content-length" and value.strip() != b"0"):
            return None  # the body would have to be read before the switch: declined instead
        if lname == "host":
            authority = value
        elif lname not in HOP_BY_HOP and lname != "http2-settings":
            regular.append((lname.encode("latin-1"), value))
    return settings[0].strip(), [(b":method", method), (b":scheme", b"http"), (b":authority", authority),
                                 (b":path", target), *regular]
