"""Coalesces Service and EndpointSlice events into one registry compile and push, like istiod's push debounce.

A rollout or the operator's start-up brings a burst of endpoint events; compiling the registry
and pushing every sidecar a new config once per event would cost events x pods configs. Here a
burst costs one: the push waits until events have been quiet for `quiet_s`, and never longer
than `max_delay_s` after the first (so a steady trickle still reaches the sidecars in time).
"""

from __future__ import annotations

import asyncio

from tracemesh_operator.state import MeshState, World

QUIET_S = 0.1  # istiod's PILOT_DEBOUNCE_AFTER
MAX_DELAY_S = 0.5  # well inside the mesh's "config effective in < 1 s"


class RegistrySync:
    def __init__(self, state: MeshState, quiet_s: float = QUIET_S, max_delay_s: float = MAX_DELAY_S) -> None:
        self._state = state
        self._quiet_s = quiet_s
        self._max_delay_s = max_delay_s
        self._world: World | None = None
        self._first: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def changed(self, world: World) -> None:
        """A Service or EndpointSlice changed; `world` is the indexes' live view (read when the push runs)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._world = world
        if self._first is None:
            self._first = now
        if self._timer is not None:
            self._timer.cancel()
        delay = min(self._quiet_s, self._first + self._max_delay_s - now)
        self._timer = loop.call_later(max(0.0, delay), self._push)

    def _push(self) -> None:
        world, self._world = self._world, None
        self._timer = self._first = None
        if world is not None:
            self._state.services_changed(world)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
