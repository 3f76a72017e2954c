"""bench/rounds.py and the proxy bench's use of it: every path once a round in a turned order, each figure the
rounds' median, each ratio taken within a round."""

from __future__ import annotations

import pytest

from bench.proxy import NGINX_PATH, PAIR_PATH, PathResult, ProxyCost, combined, throughput_ratio
from bench.rounds import Spread, rotated


def test_each_round_turns_the_order_so_that_every_path_runs_early_midway_and_late() -> None:
    paths = list("abcdefghi")
    orders = [rotated(paths, round_index, 3) for round_index in range(3)]
    assert orders == [list("abcdefghi"), list("defghiabc"), list("ghiabcdef")]
    for path in paths:
        assert sorted(order.index(path) // 3 for order in orders) == [0, 1, 2]  # a third of the run apart
    assert all(sorted(order) == paths for order in orders)  # each path once a round


def test_as_many_rounds_as_paths_put_every_path_in_every_position() -> None:
    paths = list("abcd")
    orders = [rotated(paths, round_index, 4) for round_index in range(4)]
    for path in paths:
        assert sorted(order.index(path) for order in orders) == [0, 1, 2, 3]
    assert rotated([], 1, 3) == []
    assert rotated(paths, 0, 1) == paths


def test_a_spread_is_the_median_and_the_range() -> None:
    spread = Spread.of([3.1, 2.7, 2.9])
    assert (spread.median, spread.low, spread.high) == (2.9, 2.7, 3.1)
    assert spread.format("{:.1f}x") == "2.9x (2.7x to 3.1x)"
    assert Spread.of([0.5, -10.94, 13.71]).format("{:.2f}") == "0.50 (-10.94 to 13.71)"  # a p90 added may be < 0
    assert Spread.of([0.32]).format("{:.0%}") == "32%"
    assert Spread.of([0.321, 0.318]).format("{:.0%}") == "32%"  # the same at the precision shown
    with pytest.raises(ValueError, match="no values"):
        Spread.of([])


def result(path: str, rps: float, p90: float, errors: int, costs: tuple[float, float, float]) -> PathResult:
    return PathResult(path, rps, 1.0, 2.0, 3.0, 0.5, p90, 4.0, errors,
                      proxies=[ProxyCost("client sidecar", *costs)], notes=f"{rps}")


def test_a_path_over_its_rounds_is_each_figure_s_median_with_every_round_s_errors() -> None:
    rounds = [result(PAIR_PATH, 9000, 2.0, 0, (60.0, 120.0, 52.0)),
              result(PAIR_PATH, 6000, 9.0, 2, (90.0, 180.0, 53.0)),
              result(PAIR_PATH, 8000, 2.5, 1, (62.0, 118.0, 51.0))]
    merged = combined(rounds)
    assert (merged.path, merged.saturated_rps, merged.fixed_p90_ms) == (PAIR_PATH, 8000, 2.5)
    assert merged.fixed_errors == 3  # an error in any round counts
    assert merged.proxies == [ProxyCost("client sidecar", 62.0, 120.0, 52.0)]
    assert merged.notes == "8000"  # the last round's


def testthroughput_ratio_against_nginx_is_taken_round_by_round() -> None:
    """The machine twice as busy in round two slows both pairs: the ratio is the same in every round."""
    pair = [result(PAIR_PATH, rps, 2.0, 0, (60.0, 120.0, 52.0)) for rps in (8000, 4000, 8000)]
    nginx = [result(NGINX_PATH, rps, 1.0, 0, (15.0, 50.0, 12.0)) for rps in (20000, 10000, 20000)]
    assert throughput_ratio(pair, nginx) == "40%"
    # A round where the load fell on one pair only shows in the range.
    nginx[1] = result(NGINX_PATH, 16000, 1.0, 0, (15.0, 50.0, 12.0))
    assert throughput_ratio(pair, nginx) == "40% (25% to 40%)"
