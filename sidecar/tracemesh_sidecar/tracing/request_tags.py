"""Span tags a request asks for: a tags header (Kong's `tags_header`) and selected W3C `baggage` keys.

Both come from the client, so both are bounded, and neither may replace a tag the proxy sets (the
span builder applies them first). A piece that breaks a rule is ignored and counted; the rest is used.

Tags header, as Kong's kong/plugins/zipkin/request_tags.lua parses it: `;`-separated `name=value`,
whitespace around each trimmed, empty pieces skipped, the name without whitespace (greedy: in
`a=b=c` the name is `a=b`), the value not empty. Bounds: a header over MAX_TAGS_HEADER_BYTES is
ignored whole; at most MAX_REQUEST_TAGS tags; a name over MAX_TAG_NAME or a value over MAX_TAG_VALUE
characters is malformed.

Baggage (https://www.w3.org/TR/baggage/): `,`-separated `key=value;properties`, the value
percent-decoded, properties dropped. Bounds: the spec's 8192 bytes (a longer header is ignored whole)
and its 64 list-members (later members ignored and counted); values over MAX_TAG_VALUE characters are
malformed. The header itself is always forwarded untouched.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Final
from urllib.parse import unquote

MAX_TAGS_HEADER_BYTES: Final = 1024
MAX_REQUEST_TAGS: Final = 16
MAX_TAG_NAME: Final = 64
MAX_TAG_VALUE: Final = 256
MAX_BAGGAGE_BYTES: Final = 8192
MAX_BAGGAGE_MEMBERS: Final = 64
BAGGAGE: Final = "baggage"

_TAG: Final = re.compile(r"\s*(\S+)\s*=\s*(.*\S)\s*", re.DOTALL)


def parse_tags_header(value: str) -> tuple[dict[str, str], int]:
    """The tags of a tags header, and how many pieces were malformed or over the bounds."""
    if len(value) > MAX_TAGS_HEADER_BYTES:
        return {}, 1
    tags: dict[str, str] = {}
    malformed = 0
    for item in value.split(";"):
        if not item or item.isspace():
            continue
        match = _TAG.fullmatch(item)
        if match is None or len(match[1]) > MAX_TAG_NAME or len(match[2]) > MAX_TAG_VALUE \
                or len(tags) >= MAX_REQUEST_TAGS:
            malformed += 1
            continue
        tags[match[1]] = match[2]
    return tags, malformed


def baggage_values(value: str, keys: Collection[str]) -> tuple[dict[str, str], int]:
    """The values of `keys` in a `baggage` header, and how many members were malformed or over the bounds."""
    if len(value) > MAX_BAGGAGE_BYTES:
        return {}, 1
    found: dict[str, str] = {}
    malformed = 0
    for number, member in enumerate(value.split(",")):
        if number >= MAX_BAGGAGE_MEMBERS:
            malformed += 1
            continue
        pair = member.partition(";")[0]
        key, equals, raw = pair.partition("=")
        key = key.strip()
        if not equals or not key:
            if member.strip():
                malformed += 1
            continue
        if key not in keys:
            continue
        decoded = unquote(raw.strip())
        if len(decoded) > MAX_TAG_VALUE:
            malformed += 1
            continue
        found[key] = decoded
    return found, malformed
