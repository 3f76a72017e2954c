"""What I/O a block of code does on this thread, read from Python's audit events (PEP 578).

A submit on the request path must not touch the network or a file: waiting on a collector takes a socket.
Timing it cannot show that on a shared machine (a descheduled process looks like a blocked one), but the
audit events the standard library raises for every socket and file open can: a count, the same on every run.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# socket.* covers creating, connecting, binding and sending on a socket, and name lookups; http.client.*
# a blocking HTTP client; open and os.* a file or descriptor. (time.sleep raises one only from Python 3.12.)
WATCHED_PREFIXES = ("socket.", "http.client.", "urllib.", "time.sleep", "open", "os.", "subprocess.")


class IoWatch:
    """Collects the watched audit events raised on the watching thread while `watching()` is active."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self._thread: int | None = None
        sys.addaudithook(self._hook)  # audit hooks cannot be removed: this one is inert outside watching()

    def _hook(self, event: str, _args: tuple[Any, ...]) -> None:
        if self._thread is not None and threading.get_ident() == self._thread and event.startswith(WATCHED_PREFIXES):
            self.events.append(event)

    @contextmanager
    def watching(self) -> Iterator[None]:
        self._thread = threading.get_ident()
        try:
            yield
        finally:
            self._thread = None


IO_WATCH = IoWatch()
