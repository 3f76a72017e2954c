import random

import pytest

from tracemesh_sidecar.tracing.sampling import decide


def never_called() -> float:
    raise AssertionError("the percentage must not be consulted when a decision exists")


@pytest.mark.parametrize(("upstream", "debug", "percentage", "expected"), [
    (True, False, 0.0, True),  # upstream "1" obeyed even at 0%
    (False, False, 100.0, False),  # upstream "0" obeyed even at 100%
    (None, True, 0.0, True),  # debug forces
    (False, True, 0.0, True),
    (True, True, 0.0, True),
])
def test_decisions_that_ignore_the_percentage(upstream: bool | None, debug: bool, percentage: float,
                                              expected: bool) -> None:
    assert decide(upstream, debug, percentage, never_called) is expected


@pytest.mark.parametrize(("percentage", "low", "high"), [
    (0.0, 0, 0),
    (100.0, 10000, 10000),
    (50.0, 4800, 5200),
    (1.0, 60, 140),  # Istio's default
    (0.1, 1, 25),
])
def test_percentage_with_a_seeded_rand(percentage: float, low: int, high: int) -> None:
    rng = random.Random(7)
    sampled = sum(decide(None, False, percentage, rng.random) for _ in range(10000))
    assert low <= sampled <= high


@pytest.mark.parametrize(("value", "percentage", "expected"), [
    (0.0, 0.0, False),
    (0.0, 0.0001, True),
    (0.4999, 50.0, True),
    (0.5, 50.0, False),
    (0.9999999, 100.0, True),
])
def test_percentage_boundaries(value: float, percentage: float, expected: bool) -> None:
    assert decide(None, False, percentage, lambda: value) is expected
