"""The seam between an exporter and its collector: one export request, its outcome classified for the retry loop.

Two implementations: `HttpCollectorClient` (Zipkin, OTLP/HTTP) and `GrpcCollectorClient` (OTLP/gRPC).
The exporter's queueing, batching, retrying and dropping is the same for both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from tracemesh_sidecar.spans.otlp import PartialSuccess

# Enough of a collector's error answer to say what it disliked, without holding a large body.
ERROR_BODY_BYTES = 512
RESPONSE_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class ExportOutcome:
    sent: bool
    retryable: bool = False
    error: str = ""  # what went wrong, stable enough to deduplicate log lines on
    retry_after_s: float | None = None
    rejected_spans: int = 0  # sent, but the collector rejected this many (OTLP partial success): never retried


SENT = ExportOutcome(sent=True)


def accepted(partial: PartialSuccess) -> ExportOutcome:
    """An accepted export, with what its answer says was rejected all the same."""
    if partial.rejected_spans:
        return ExportOutcome(sent=True, rejected_spans=partial.rejected_spans,
                             error=partial.error_message or "(no error message)")
    return SENT


class PhaseTimedOut(Exception):
    """One phase of an export (send, read) outlasted its own timeout (a provider's sendTimeout, readTimeout)."""


@contextlib.asynccontextmanager
async def phase_timeout(seconds: float | None, phase: str) -> AsyncIterator[None]:
    """Bounds the block by `seconds` (None: only the export's total bounds it), as PhaseTimedOut naming the phase."""
    if seconds is None:
        yield
        return
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise PhaseTimedOut(f"{phase} timed out after {seconds:g} s") from None


class CollectorClient(Protocol):
    @property
    def url(self) -> str:
        """Where the spans go, for log lines."""
        ...

    async def export(self, body: bytes) -> ExportOutcome:
        """Sends one encoded batch; never raises for anything the network or the collector does."""
        ...

    async def close(self) -> None: ...
