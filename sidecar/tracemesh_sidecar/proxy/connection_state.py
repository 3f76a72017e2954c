"""The states of an accepted client connection and the transitions between them, in one place (h11's _state.py).

    SNIFF ──http1──▶ HTTP ◀──declined upgrade── WAIT
      │  ╲            │ ╲                        ▲
      │   ╲opaque─────┼──╲──upgrade, CONNECT─────┘
      │    ▼          │   ▼
      │   WAIT        │  REFUSED ──▶ LINGER
      └─http2─▶ HANDED_OVER ◀── tunnel / h2c upgrade
    every state ──▶ LINGER (the answer written, the client's last bytes read and dropped) ──▶ CLOSED

- SNIFF: the first bytes decide the protocol (proxy/sniff.py);
- HTTP: HTTP/1.x requests are parsed and answered in order;
- WAIT: an upstream for a tunnel is being opened (opaque bytes, CONNECT, an Upgrade request); what the client
  sends meanwhile is held. If the app declines the upgrade, the held bytes are HTTP again;
- REFUSED: a request could not be taken: those read before it are answered, then its refusal;
- LINGER: nginx's lingering close: what still comes in is read and dropped until the client stops;
- HANDED_OVER: the transport belongs to another protocol now (a tunnel's end, or the HTTP/2 connection);
- CLOSED: over.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class ConnectionState(IntEnum):
    SNIFF = 0
    HTTP = 1
    WAIT = 2
    REFUSED = 3
    LINGER = 4
    HANDED_OVER = 5
    CLOSED = 6


_S: Final = ConnectionState
TRANSITIONS: Final[dict[ConnectionState, frozenset[ConnectionState]]] = {
    _S.SNIFF: frozenset({_S.HTTP, _S.WAIT, _S.HANDED_OVER, _S.LINGER, _S.CLOSED}),
    _S.HTTP: frozenset({_S.WAIT, _S.REFUSED, _S.HANDED_OVER, _S.LINGER, _S.CLOSED}),
    _S.WAIT: frozenset({_S.HTTP, _S.HANDED_OVER, _S.LINGER, _S.CLOSED}),
    _S.REFUSED: frozenset({_S.LINGER, _S.CLOSED}),
    _S.LINGER: frozenset({_S.CLOSED}),
    _S.HANDED_OVER: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset({_S.CLOSED}),
}


class ConnectionStateError(Exception):  # not RuntimeError: mypyc compiles exceptions derived from Exception only
    """A transition the table does not allow: a bug in the connection's handling, never a client's doing."""


def transition(current: ConnectionState, new: ConnectionState) -> ConnectionState:
    """`new`, if the table allows moving there from `current`."""
    if new not in TRANSITIONS[current]:
        raise ConnectionStateError(f"a client connection cannot go from {current.name} to {new.name}")
    return new
