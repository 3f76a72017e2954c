"""Waiting out the drain that proxy/termination.py plans, as pilot-agent waits (pkg/envoy/agent.go terminate())."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tracemesh_sidecar.proxy.termination import ACTIVE_CONNECTION_CHECK_S, DrainPlan


async def wait_for_drain(plan: DrainPlan, active_connections: Callable[[], int],
                         sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Returns when the proxy may stop: after the drain duration, or (exit on zero) once nothing is active."""
    if not plan.exit_on_zero_active_connections:
        await sleep(plan.termination_drain_s)
        return
    await sleep(plan.minimum_drain_s)
    while active_connections() > 0:
        await sleep(ACTIVE_CONNECTION_CHECK_S)
