"""The one error every span decoder raises, so the collector can answer any bad payload with a 400."""

from __future__ import annotations


class SpanDecodeError(ValueError):
    """A span payload is malformed.

    `field` locates the problem inside the payload (`span[3].traceId`, `body`), `problem` says what
    is wrong; the message joins them: `span[3].traceId: must be 16 or 32 lowercase hex characters`.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")
