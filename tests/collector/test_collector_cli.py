"""`tracemesh collector`'s process settings and its refusal of incomplete arguments (tracemesh_collector/cli.py)."""

from __future__ import annotations

import argparse
import gc
from collections.abc import Iterator

import pytest

from tracemesh_collector import cli


@pytest.fixture()
def thresholds_restored() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*before)


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_an_auth_port_without_a_token_is_refused_naming_both_flags(
        capsys: pytest.CaptureFixture[str], thresholds_restored: None) -> None:
    assert cli.run(parsed("--otlp-grpc-auth-port", "0")) == 2
    assert "--otlp-grpc-auth-port and --bearer-token go together" in capsys.readouterr().err


def test_the_collector_process_runs_full_collections_less_often_than_cpythons_default(
        thresholds_restored: None) -> None:
    """Its stored spans are long-lived objects a full collection traverses: the default thresholds cost a
    quarter of ingest (cli.GC_THRESHOLDS says how that was measured)."""
    gc.set_threshold(700, 10, 10)
    cli.run(parsed("--otlp-grpc-auth-port", "0"))
    assert gc.get_threshold() == cli.GC_THRESHOLDS
    assert cli.GC_THRESHOLDS[0] > 700
