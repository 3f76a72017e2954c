import os
import re
import uuid
from collections.abc import Callable, Iterator

import pytest

from tracemesh_sidecar.tracing.ids import drop_fetched, new_request_id, new_span_id, new_trace_id

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


@pytest.fixture(autouse=True)
def _fresh_random_bytes() -> Iterator[None]:
    """No test leaves the bytes of a stand-in os.urandom to the ids of the tests after it."""
    yield
    drop_fetched()


def _bytes_from(pattern: bytes) -> Callable[[int], bytes]:
    return lambda size: (pattern * size)[:size]


def test_the_version_and_variant_are_written_over_whatever_bytes_come(monkeypatch: pytest.MonkeyPatch) -> None:
    # 128 ids use up a buffer of 2048 bytes, so the buffer is fetched again (from the stand-in) within them.
    monkeypatch.setattr(os, "urandom", _bytes_from(b"\xff"))
    assert "ffffffff-ffff-4fff-bfff-ffffffffffff" in {new_request_id() for _ in range(130)}
    monkeypatch.setattr(os, "urandom", _bytes_from(b"\x00"))
    assert "00000000-0000-4000-8000-000000000000" in {new_request_id() for _ in range(130)}


def test_zero_ids_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fetched buffer that starts with 16 zero bytes: the span id and the trace id high half would be zero.
    monkeypatch.setattr(os, "urandom", lambda size: bytes(16) + b"\x01" * (size - 16))
    span_ids = [new_span_id() for _ in range(300)]
    assert "0" * 16 not in span_ids
    assert "01" * 8 in span_ids
    trace_ids = [new_trace_id() for _ in range(300)]
    assert not any(value.startswith("0" * 16) for value in trace_ids)
    assert "01" * 16 in trace_ids


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_span_id()  # the parent holds a fetched buffer the child inherits
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.write(write_end, " ".join(new_span_id() for _ in range(8)).encode())
        os._exit(0)
    os.close(write_end)
    child_ids = os.read(read_end, 4096).decode().split()
    os.close(read_end)
    os.waitpid(pid, 0)
    parent_ids = [new_span_id() for _ in range(8)]
    assert len(child_ids) == 8
    assert not set(child_ids) & set(parent_ids)
