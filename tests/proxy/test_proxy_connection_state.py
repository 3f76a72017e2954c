"""The client connection's states and transitions (proxy/connection_state.py), the table h11's _state.py models."""

from __future__ import annotations

import pytest

from tracemesh_sidecar.proxy.connection_state import TRANSITIONS, ConnectionState, ConnectionStateError, transition

S = ConnectionState


@pytest.mark.parametrize(("current", "new"), [
    (S.SNIFF, S.HTTP), (S.SNIFF, S.WAIT), (S.SNIFF, S.HANDED_OVER),  # HTTP/1.x, opaque, the h2c preface
    (S.HTTP, S.WAIT), (S.WAIT, S.HTTP),  # an Upgrade request, and the app declining it
    (S.HTTP, S.HANDED_OVER),  # an accepted `Upgrade: h2c`
    (S.WAIT, S.HANDED_OVER),  # the tunnel is open
    (S.HTTP, S.REFUSED), (S.REFUSED, S.LINGER), (S.LINGER, S.CLOSED),
])
def test_the_ways_a_connection_goes(current: ConnectionState, new: ConnectionState) -> None:
    assert transition(current, new) is new


@pytest.mark.parametrize(("current", "new"), [
    (S.CLOSED, S.HTTP), (S.HANDED_OVER, S.HTTP), (S.LINGER, S.HTTP), (S.REFUSED, S.HTTP), (S.SNIFF, S.REFUSED),
])
def test_a_transition_the_table_lacks_is_a_bug_and_says_which(current: ConnectionState, new: ConnectionState) -> None:
    with pytest.raises(ConnectionStateError, match=f"from {current.name} to {new.name}"):
        transition(current, new)


def test_every_state_can_close_and_only_closing_follows_closed() -> None:
    assert all(S.CLOSED in allowed for allowed in TRANSITIONS.values())
    assert TRANSITIONS[S.CLOSED] == {S.CLOSED}
    assert set(TRANSITIONS) == set(S)
