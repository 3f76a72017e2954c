"""IP address texts in spans, each parsed once: a collector decodes the same few addresses on every span.

ipaddress's parse was about 40% of decoding a Zipkin JSON span. The memo is bounded (emptied when full),
so a stream of distinct addresses costs a parse each, never memory. Pure.
"""

from __future__ import annotations

import ipaddress
from typing import Final

MAX_REMEMBERED: Final = 4096
_versions: Final[dict[str, int]] = {}


def address_version(text: str) -> int:
    """4 or 6 when `text` is an IPv4 or IPv6 address (as ipaddress.ip_address reads it), else 0."""
    version = _versions.get(text)
    if version is None:
        try:
            version = ipaddress.ip_address(text).version
        except ValueError:
            version = 0
        if len(_versions) >= MAX_REMEMBERED:
            _versions.clear()
        _versions[text] = version
    return version
