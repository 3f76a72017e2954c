"""RegistrySync: a burst of Service/EndpointSlice events is one registry push, never later than max_delay_s."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from tracemesh_operator.registry_sync import RegistrySync
from tracemesh_operator.state import MeshState, World


class RecordingState:
    def __init__(self) -> None:
        self.pushes: list[tuple[float, World]] = []

    def services_changed(self, world: World) -> None:
        self.pushes.append((asyncio.get_running_loop().time(), world))


def world(tag: str) -> World:
    return World(pods={}, telemetries={}, meshconfigs={}, services={tag: []})


def sync_for(state: RecordingState, **kwargs: Any) -> RegistrySync:
    return RegistrySync(cast(MeshState, state), **kwargs)


async def test_a_burst_is_one_push_of_the_latest_world() -> None:
    state = RecordingState()
    sync = sync_for(state, quiet_s=0.05, max_delay_s=1.0)
    for index in range(20):
        sync.changed(world(str(index)))
    await asyncio.sleep(0.15)
    assert [pushed.services for _, pushed in state.pushes] == [{"19": []}]


async def test_a_steady_trickle_is_pushed_within_max_delay() -> None:
    state = RecordingState()
    sync = sync_for(state, quiet_s=0.05, max_delay_s=0.2)
    started = asyncio.get_running_loop().time()
    for index in range(12):  # an event every 30 ms: never quiet for 50 ms
        sync.changed(world(str(index)))
        await asyncio.sleep(0.03)
    sync.cancel()
    assert state.pushes, "nothing pushed during a steady trickle"
    first = state.pushes[0][0] - started
    assert 0.2 <= first < 0.5  # not before max_delay_s; the rest is slack for a loaded machine


async def test_cancel_drops_a_pending_push() -> None:
    state = RecordingState()
    sync = sync_for(state, quiet_s=0.02)
    sync.changed(world("a"))
    sync.cancel()
    await asyncio.sleep(0.06)
    assert state.pushes == []
