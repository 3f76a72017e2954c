"""A provider's sendTimeout and readTimeout (Kong's send_timeout, read_timeout) beside the total: each phase of an
export is cut by its own timeout and the failure names the phase, retryable as any timeout."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from collector_double import SLOW, Transport, make_span, running_collector

from tracemesh_sidecar.export.collector_client import CollectorClient
from tracemesh_sidecar.export.grpc_client import GrpcCollectorClient
from tracemesh_sidecar.export.http_client import HttpCollectorClient
from tracemesh_sidecar.export.wire import wire_format

CLIENTS: dict[Transport, type[CollectorClient]] = {"http": HttpCollectorClient, "grpc": GrpcCollectorClient}


@pytest.mark.parametrize(("transport", "phase", "expected"), [
    ("http", "send_timeout_s", "send timed out after 0.2 s"),
    ("http", "read_timeout_s", "read 0.2 s"),  # aiohttp's sock_read: its own message, the phase's setting named
    ("grpc", "read_timeout_s", "read timed out after 0.2 s"),
])
async def test_a_phase_timeout_cuts_the_export_before_the_total(transport: Transport, phase: str,
                                                                expected: str) -> None:
    async with running_collector(status=SLOW, transport=transport) as collector:
        provider = replace(collector.provider(), timeout_s=30.0, **{phase: 0.2})
        wire = wire_format(provider, os.environ)
        client = CLIENTS[transport](provider, wire)
        try:
            outcome = await client.export(wire.encode([make_span(0)]))
        finally:
            collector.recover()
            await client.close()
    assert not outcome.sent and outcome.retryable
    assert expected in outcome.error
    assert "30" not in outcome.error  # not the total's


async def test_unset_phase_timeouts_leave_a_healthy_export_alone() -> None:
    async with running_collector(transport="grpc") as collector:
        provider = replace(collector.provider(), send_timeout_s=5.0, read_timeout_s=5.0)
        wire = wire_format(provider, os.environ)
        client = GrpcCollectorClient(provider, wire)
        try:
            outcome = await client.export(wire.encode([make_span(0)]))
        finally:
            await client.close()
    assert outcome.sent
