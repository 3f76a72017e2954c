"""A request's Record copies as an equal Record in the compiled build too, where it is a native class that writes
its own `__init__` (telemetry/record.py). Shallow only: a compiled frozen dataclass (its Peer) cannot be deep-copied
or pickled (README, "The compiled request path")."""

from __future__ import annotations

import copy

from telemetry_records import REVIEWS, http_record


def test_a_record_copies_as_an_equal_record_sharing_its_values() -> None:
    record = http_record(peer=REVIEWS)
    copied = copy.copy(record)
    assert copied == record and copied is not record
    assert copied.request_headers is record.request_headers
