"""The pure parts of exporting: which answers are retried, how long to wait, how often to log."""

from __future__ import annotations

import logging
import random

import pytest

from tracemesh_sidecar.export.error_log import MAX_REMEMBERED, RateLimitedLog
from tracemesh_sidecar.export.retry import (
    MAX_DELAY_S,
    backoff_delay,
    is_retryable_status,
    parse_retry_after,
)


@pytest.mark.parametrize(("status", "retryable"), [
    (429, True), (500, True), (502, True), (503, True), (504, True),
    (400, False), (401, False), (403, False), (404, False), (413, False), (415, False),
])
def test_retryable_statuses(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    rand = random.Random(7)
    for attempt, step in [(0, 0.2), (1, 0.4), (2, 0.8), (3, 1.6), (10, MAX_DELAY_S), (500, MAX_DELAY_S)]:
        delays = {backoff_delay(attempt, rand=rand) for _ in range(50)}
        assert all(step / 2 <= delay <= step for delay in delays)
        assert len(delays) > 1  # jittered


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    assert backoff_delay(3, retry_after_s=0) == 0
    assert backoff_delay(0, retry_after_s=1.5) == 1.5
    assert backoff_delay(0, retry_after_s=3600) == MAX_DELAY_S


@pytest.mark.parametrize(("header", "seconds"), [
    (None, None), ("2", 2.0), (" 0.5 ", 0.5), ("-1", None), ("Wed, 21 Oct 2015 07:28:00 GMT", None),
])
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_each_distinct_error_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = RateLimitedLog(logging.getLogger("test.export"), interval_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        assert log.warning("HTTP 400", "first")
        assert not log.warning("HTTP 400", "again")
        assert log.warning("HTTP 413", "another error")
        now[0] = 61.0
        assert log.warning("HTTP 400", "a minute later")
    assert [record.getMessage() for record in caplog.records] == ["first", "another error", "a minute later"]


def test_remembered_errors_are_bounded() -> None:
    log = RateLimitedLog(logging.getLogger("test.export"), clock=lambda: 0.0)
    for number in range(MAX_REMEMBERED * 3):
        assert log.warning(f"error {number}", "x")
    assert len(log._last_logged) <= MAX_REMEMBERED
