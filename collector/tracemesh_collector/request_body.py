"""Reading an ingest request's body within a byte cap, and decoding it with every failure a client error.

The cap is the OpenTelemetry Collector's default for its HTTP receivers (confighttp's
`max_request_body_size`, 20 MiB). A body whose Content-Length is over the cap is refused with
413 before any of it is read (an `Expect: 100-continue` client is refused before it sends it);
a chunked or compressed body is read, and inflated by aiohttp in bounded steps, only until it
passes the cap. Nothing is stored from a refused body, so the store is untouched.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from tracemesh_sidecar.spans.errors import SpanDecodeError
from tracemesh_sidecar.spans.model import Span

MAX_BODY_BYTES = 20 * 1024 * 1024
# glibc's malloc_trim, where there is one: see _return_freed_memory.
_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None) if sys.platform == "linux" else None


class BodyRefused(Exception):
    """The body was not taken: `status` (400, 413) and a message saying what to change. `close_connection`: the
    rest of the body is still on its way, and the answer should close the connection rather than read it."""

    def __init__(self, status: int, message: str, close_connection: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close_connection = close_connection


def refusal(refused: BodyRefused, response: web.Response) -> web.Response:
    """`response` for a refused body, closing the connection when the rest of the body would follow (as nginx
    answers 413): reading and discarding up to 100 MB more would cost time and memory for nothing."""
    if refused.close_connection:
        response.force_close()
    return response


async def read_spans(request: web.Request, decode: Callable[[bytes], list[Span]],
                     refusal: str = "malformed spans, none stored", limit: int = MAX_BODY_BYTES) -> list[Span]:
    """The spans of the request's body; BodyRefused when the body is too large (413), unreadable or malformed
    (400, the message starting with `refusal`)."""
    try:
        return decode(await read_body(request, limit))
    except SpanDecodeError as error:
        raise BodyRefused(400, f"{refusal}: {error}") from None
    except RecursionError:  # json and protobuf's JSON mapping recurse once per nesting level
        raise BodyRefused(400, f"{refusal}: body: nests too deeply; send the documented structure") from None


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, inflated when Content-Encoding says gzip/deflate, at most `limit` bytes; BodyRefused when it is
    longer, SpanDecodeError when it cannot be inflated."""
    refuse_declared_length(request, limit)
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.content.iter_any():
            total += len(chunk)
            if total > limit:
                chunks.clear()
                _return_freed_memory()
                raise BodyRefused(413, f"the body exceeds the {limit}-byte limit (after decompression); "
                                       "send smaller batches", close_connection=True)
            chunks.append(chunk)
    except RequestPayloadError:
        encoding = request.headers.get("Content-Encoding", "identity")
        raise SpanDecodeError("body", f"is not valid {encoding!r} data as its Content-Encoding says; "
                                      "send it uncompressed or validly compressed") from None
    return b"".join(chunks)


def _return_freed_memory() -> None:
    """Hands the pages of a refused body (up to the cap, read in many small chunks) back to the OS. glibc keeps
    freed heap memory for reuse, so without this every refused chunked body would leave the collector's RSS up
    to the cap higher for good; this path is rare (a refusal), so the trim's cost does not matter."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def refuse_declared_length(request: web.BaseRequest, limit: int = MAX_BODY_BYTES) -> None:
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyRefused(413, f"Content-Length {declared} exceeds the {limit}-byte limit; send smaller batches")


async def refuse_oversized_expectation(request: web.Request) -> None:
    """An expect handler: answer `Expect: 100-continue` with 413 when the declared body is over the cap."""
    try:
        refuse_declared_length(request)
    except BodyRefused as refused:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=request.content_length or 0,
                                            text=refused.message) from None
    # then what aiohttp's default expect handler does
    expect = request.headers.get("Expect", "")
    if request.version == (1, 1):
        if expect.lower() != "100-continue":
            raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the body proper has not started
