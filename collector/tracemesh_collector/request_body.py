"""Reading an ingest request's body, with a broken one reported the way a malformed payload is."""

from __future__ import annotations

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from tracemesh_sidecar.spans.errors import SpanDecodeError


async def read_body(request: web.Request) -> bytes:
    """The body, inflated when Content-Encoding says gzip/deflate; SpanDecodeError when it cannot be read."""
    try:
        return await request.read()
    except RequestPayloadError:
        encoding = request.headers.get("Content-Encoding", "identity")
        raise SpanDecodeError("body", f"is not valid {encoding!r} data as its Content-Encoding says; "
                                      "send it uncompressed or validly compressed") from None
