"""Fixtures for the collector tests: a running collector on ephemeral ports and a spec-checking Zipkin client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from collector_samples import NOW_S
from zipkin_api_spec import ZipkinApiSpec
from zipkin_client import ZipkinClient

from tracemesh_collector import RunningCollector, run_collector


@pytest.fixture
async def collector() -> AsyncIterator[RunningCollector]:
    async with run_collector("127.0.0.1", zipkin_port=0, otlp_port=0, query_port=0, max_spans=1000,
                             clock=lambda: NOW_S, otlp_grpc_port=0) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
def zipkin(http: aiohttp.ClientSession, collector: RunningCollector) -> ZipkinClient:
    return ZipkinClient(http, collector, ZipkinApiSpec.load_if_present())
