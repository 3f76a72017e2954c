"""spans/addresses.py: an address text's version as ipaddress reads it, remembered in a bounded memo."""

from __future__ import annotations

import ipaddress

import pytest

from tracemesh_sidecar.spans import addresses
from tracemesh_sidecar.spans.addresses import address_version


@pytest.mark.parametrize(("text", "version"), [
    ("10.244.0.5", 4), ("2001:db8::c001", 6), ("::ffff:10.0.0.1", 6), ("fe80::1%eth0", 6),
    ("10.0.0.300", 0), ("::g", 0), ("", 0), ("productpage", 0), (" 10.0.0.1", 0), ("010.0.0.1", 0),
])
def test_the_version_is_ipaddress_own_reading(text: str, version: int) -> None:
    for _ in range(2):  # read, then remembered: the same answer
        assert address_version(text) == version
    try:
        expected = ipaddress.ip_address(text).version
    except ValueError:
        expected = 0
    assert version == expected


def test_distinct_addresses_never_grow_the_memo_past_its_bound() -> None:
    for number in range(3 * addresses.MAX_REMEMBERED):
        assert address_version(f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}") == 4
        assert address_version(f"host-{number}") == 0
    assert len(addresses._versions) <= addresses.MAX_REMEMBERED
