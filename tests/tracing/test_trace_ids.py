import re
import uuid

import pytest

from tracemesh_sidecar.tracing.ids import new_request_id, new_span_id, new_trace_id

HEX16 = re.compile(r"[0-9a-f]{16}")
HEX32 = re.compile(r"[0-9a-f]{32}")


def test_span_ids_are_16_lowercase_hex_non_zero_and_distinct() -> None:
    ids = [new_span_id() for _ in range(2000)]
    assert all(HEX16.fullmatch(value) and value != "0" * 16 for value in ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(("bits64", "pattern"), [(False, HEX32), (True, HEX16)])
def test_trace_id_width_follows_the_64bit_setting(bits64: bool, pattern: re.Pattern[str]) -> None:
    ids = [new_trace_id(bits64) for _ in range(2000)]
    assert all(pattern.fullmatch(value) for value in ids)
    assert len(set(ids)) == len(ids)


def test_128bit_trace_ids_never_have_a_zero_high_half() -> None:
    # A zero high half would read as a 64-bit id to every receiver (and to our own extractor).
    assert all(not new_trace_id().startswith("0" * 16) for _ in range(2000))


def test_request_ids_are_uuid4_strings() -> None:
    ids = [new_request_id() for _ in range(2000)]
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == value
    assert len(set(ids)) == len(ids)
