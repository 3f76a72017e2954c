import random
import uuid

import pytest

from tracemesh_sidecar.tracing.request_id import (
    decide_by_request_id,
    new_decided_request_id,
    sampling_numerator,
    without_trace_reason,
)
from tracemesh_sidecar.tracing.sampling import decide


@pytest.mark.parametrize(("upstream", "debug", "local", "expected"), [
    (True, False, False, True),  # upstream "1" obeyed though the hop would not sample
    (False, False, True, False),  # upstream "0" obeyed though the hop would sample
    (None, True, False, True),  # debug forces
    (False, True, False, True),
    (True, True, False, True),
    (None, False, True, True),  # no upstream decision: the hop's own
    (None, False, False, False),
])
def test_decisions(upstream: bool | None, debug: bool, local: bool, expected: bool) -> None:
    assert decide(upstream, debug, local) is expected


# --- Envoy's UUID request-id extension (source/extensions/request_id/uuid/config.cc) -------------------


@pytest.mark.parametrize(("percentage", "numerator"), [
    (0.0, 0), (1.0, 100), (0.01, 1), (0.005, 1), (0.004, 0), (33.333, 3333), (100.0, 10000),
])
def test_percentage_is_counted_in_ten_thousandths(percentage: float, numerator: int) -> None:
    assert sampling_numerator(percentage) == numerator


@pytest.mark.parametrize(("request_id", "numerator", "traced", "forwarded"), [
    # The first 8 hex digits modulo 10000 against the numerator; a sampled UUID carries "9" at index 14.
    ("00001387-0000-4000-8000-000000000000", 5000, True, "00001387-0000-9000-8000-000000000000"),  # 4999
    ("00001388-0000-4000-8000-000000000000", 5000, False, "00001388-0000-4000-8000-000000000000"),  # 5000
    ("0000270f-0000-4000-8000-000000000000", 10000, True, "0000270f-0000-9000-8000-000000000000"),  # 9999
    ("00002710-0000-4000-8000-000000000000", 1, True, "00002710-0000-9000-8000-000000000000"),  # 10000 -> 0
    # A decision packed upstream is kept, whatever the percentage here.
    ("ffffffff-0000-9000-8000-000000000000", 0, True, "ffffffff-0000-9000-8000-000000000000"),
    ("ffffffff-0000-a000-8000-000000000000", 0, True, "ffffffff-0000-a000-8000-000000000000"),
    ("ffffffff-0000-b000-8000-000000000000", 0, True, "ffffffff-0000-b000-8000-000000000000"),
    # Not a UUID: sampled by its first 8 hex digits, but nothing is packed into it.
    ("00000001deadbeef", 100, True, "00000001deadbeef"),
    # Not usable at all: never sampled (Envoy's "corrupted request id").
    ("abc-1", 10000, False, "abc-1"),
    ("zzzzzzzz-0000-4000-8000-000000000000", 10000, False, "zzzzzzzz-0000-4000-8000-000000000000"),
])
def test_decision_by_request_id(request_id: str, numerator: int, traced: bool, forwarded: str) -> None:
    assert decide_by_request_id(request_id, False, numerator) == (traced, forwarded)


def test_client_trace_id_forces_the_trace_and_marks_it_client_forced() -> None:
    request_id = "ffffffff-0000-4000-8000-000000000000"
    assert decide_by_request_id(request_id, True, 0) == (True, "ffffffff-0000-b000-8000-000000000000")
    assert decide_by_request_id("not-hex!", True, 10000) == (False, "not-hex!")  # the id is checked first


@pytest.mark.parametrize(("percentage", "low", "high"), [
    (0.0, 0, 0), (100.0, 10000, 10000), (50.0, 4800, 5200), (1.0, 60, 140), (0.1, 1, 25),
])
def test_random_request_ids_sample_about_the_percentage(percentage: float, low: int, high: int) -> None:
    rng = random.Random(7)
    numerator = sampling_numerator(percentage)
    sampled = sum(decide_by_request_id(str(uuid.UUID(int=rng.getrandbits(128), version=4)), False, numerator)[0]
                  for _ in range(10000))
    assert low <= sampled <= high


def test_every_proxy_takes_the_same_decision_for_one_request_id() -> None:
    request_id = "12345678-0000-4000-8000-000000000000"  # 0x12345678 % 10000 = 9896
    first = decide_by_request_id(request_id, False, sampling_numerator(98.97))
    assert first == (True, "12345678-0000-9000-8000-000000000000")
    assert decide_by_request_id(first[1], False, 0) == first  # the next hop keeps it
    assert decide_by_request_id(request_id, False, sampling_numerator(98.96))[0] is False


@pytest.mark.parametrize(("packed", "original"), [
    ("ffffffff-0000-9000-8000-000000000000", "ffffffff-0000-4000-8000-000000000000"),
    ("ffffffff-0000-b000-8000-000000000000", "ffffffff-0000-4000-8000-000000000000"),
    ("ffffffff-0000-4000-8000-000000000000", "ffffffff-0000-4000-8000-000000000000"),
    ("00000001deadbeef9", "00000001deadbeef9"),
])
def test_the_sent_request_id_is_found_again_without_the_packed_reason(packed: str, original: str) -> None:
    assert without_trace_reason(packed) == original


@pytest.mark.parametrize("client_trace_id", [False, True])
@pytest.mark.parametrize("percentage", [0.0, 1.0, 50.0, 100.0])
def test_a_new_request_id_is_decided_as_the_same_id_received_would_be(percentage: float,
                                                                        client_trace_id: bool) -> None:
    """A hop that makes the request id decides on it as it writes it (hop.py): the same decision and the same
    forwarded id as decide_by_request_id takes for that id received as a plain UUID4."""
    numerator = sampling_numerator(percentage)
    decisions = [new_decided_request_id(client_trace_id, numerator) for _ in range(3000)]
    for traced, request_id in decisions:
        received = without_trace_reason(request_id)
        assert uuid.UUID(received).version == 4 and str(uuid.UUID(received)) == received
        assert decide_by_request_id(received, client_trace_id, numerator) == (traced, request_id)
    assert len({request_id for _, request_id in decisions}) == len(decisions)
    if 0 < percentage < 100 and not client_trace_id:
        assert {traced for traced, _ in decisions} == {True, False}
