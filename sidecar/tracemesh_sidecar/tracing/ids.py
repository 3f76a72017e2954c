"""New ids: span ids, trace ids and x-request-id values, as lowercase hex / UUID4 strings.

The random bytes come from the kernel's generator (`os.urandom`) 2048 at a time, and each id takes
the next 8 or 16 of them, as Envoy does: its RandomGeneratorImpl prefetches 2048 bytes of RAND_bytes
for random() and uuid() alike (source/common/common/random_generator.cc), since a system call per id
would cost more than the id. The bytes are kept as their hex digits, converted once a fetch: an id is
a slice of that text, where a slice of the bytes and its `.hex()` cost a generic method call per id
(callgrind: ~600 instructions, three ids a request). A forked child drops the digits it inherited, so
that it never repeats its parent's ids. Ids are made on the event loop's thread only (one buffer, no lock).
"""

from __future__ import annotations

import os
from typing import Final

# Envoy's prefetch for uuid() (and 256 uint64s for random()): past it, the gain per doubling is a few percent.
_PREFETCH: Final = 2048
_ZERO_16: Final = "0" * 16
# A UUID's variant digit: the RFC 4122 variant's two bits (10) over the two low bits of a random digit.
_VARIANT_DIGIT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


class _RandomDigits:
    """The hex digits of the random bytes ids are cut from."""

    def __init__(self) -> None:
        self._digits = ""
        self._at = 0

    def take(self, count: int) -> str:
        """The next `count` digits (`count` / 2 random bytes)."""
        at = self._at
        end = at + count
        if end > len(self._digits):
            self._digits = os.urandom(_PREFETCH).hex()
            at, end = 0, count
        self._at = end
        return self._digits[at:end]

    def drop(self) -> None:
        self._digits = ""
        self._at = 0


_RANDOM: Final = _RandomDigits()


def drop_fetched() -> None:
    """Forget the random bytes fetched and not yet used: the next id fetches new ones (in a forked child)."""
    _RANDOM.drop()


os.register_at_fork(after_in_child=drop_fetched)


def new_span_id() -> str:
    """A random non-zero 64-bit id as 16 lowercase hex characters."""
    value = _RANDOM.take(16)
    while value == _ZERO_16:
        value = _RANDOM.take(16)
    return value


def new_trace_id(bits64: bool = False) -> str:
    """A random trace id: 32 hex characters, or 16 when the provider asks for 64-bit trace ids.

    A 128-bit id always has a non-zero high half: receivers (Zipkin among them) read a 32-character
    id whose first 16 are zero as the 64-bit id in its low half.
    """
    if bits64:
        return new_span_id()
    value = _RANDOM.take(32)
    while value[0] == "0" and value.startswith(_ZERO_16):  # the first digit alone tells all but 1 in 16
        value = _RANDOM.take(32)
    return value


def new_request_id() -> str:
    """A random (version 4, RFC 4122 variant) UUID string for `x-request-id`."""
    return uuid_text(random_hex(32), "4")


def random_hex(count: int) -> str:
    """`count` random lowercase hex digits."""
    return _RANDOM.take(count)


def uuid_text(digits: str, version: str) -> str:
    """32 hex digits as a UUID string, `version` and the RFC 4122 variant's bits written over their places.

    uuid.uuid4() makes a system call and a UUID object, for a value only ever used as a string.
    """
    variant = _VARIANT_DIGIT[digits[16]]
    return f"{digits[:8]}-{digits[8:12]}-{version}{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"
