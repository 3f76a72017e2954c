"""Fixtures for the export tests: the transport a test runs over, when it runs over both."""

from __future__ import annotations

import pytest
from collector_double import Transport


@pytest.fixture(params=["http", "grpc"])
def transport(request: pytest.FixtureRequest) -> Transport:
    """HTTP (Zipkin JSON to an aiohttp double) or OTLP/gRPC (to a grpcio double)."""
    result: Transport = request.param
    return result
