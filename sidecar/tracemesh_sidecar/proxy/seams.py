"""The seams between the version-free relay (relay.py) and the codecs that frame its messages.

A request/response is relayed between a `DownstreamStream` (the client's side: an HTTP/2 stream, or one
HTTP/1.1 request on its connection) and an `UpstreamStream` (an HTTP/2 stream to the upstream, or an
HTTP/1.1 request on a pooled connection) that a `StreamOpener` opens; the upstream side reports back to
its `UpstreamOwner`. Messages cross these seams as HTTP/2 header lists (pseudo-headers first, lowercase
names): HTTP/1 codecs translate at their edge, as Envoy's codecs hand its connection manager one header
map whatever the version.
"""

from __future__ import annotations

from typing import Final, Protocol

from tracemesh_sidecar.proxy.state import DownstreamInfo

HeaderList = list[tuple[bytes, bytes]]
Key = tuple[str, int]

# The RFC 9113 section 7 error code a relay resets a stream with.
INTERNAL_ERROR: Final = 0x2


class DownstreamStream(Protocol):
    """The client's side of one request."""

    @property
    def info(self) -> DownstreamInfo: ...

    def count(self, stat: str) -> None:
        """Count `stat` on the listener (`downstream_rq_headers_too_large`, ...)."""

    def send_headers(self, headers: HeaderList, end_stream: bool) -> None:
        """The response head, `:status` first."""

    def send_data(self, data: bytes, end_stream: bool) -> None: ...

    def send_trailers(self, trailers: HeaderList) -> None:
        """Trailers end the response."""

    def reset(self, error_code: int) -> None:
        """Abandon the response midway (HTTP/2: RST_STREAM; HTTP/1.1: the connection is cut)."""

    def acknowledge(self, size: int) -> None:
        """`size` bytes of request body reached the upstream: the client may send as many more."""

    def flush(self) -> None: ...

    def done(self, reset_by_client: bool, lifetime_s: float) -> None:
        """The relay is over (its spans reported)."""


class UpstreamStream(Protocol):
    """The upstream's side of one request, opened with the request's head."""

    @property
    def local(self) -> tuple[str, int] | None:
        """The upstream socket's own address (access logs' UPSTREAM_LOCAL_ADDRESS)."""

    def send_data(self, data: bytes, end_stream: bool) -> None: ...

    def send_trailers(self, trailers: HeaderList) -> None: ...

    def acknowledge(self, size: int) -> None:
        """`size` bytes of response body reached the client: the upstream may send as many more."""

    def flush(self) -> None: ...

    def cancel(self) -> None:
        """The relay gave up on the response."""


class UpstreamOwner(Protocol):
    """What an upstream stream reports to (relay.Relay)."""

    def response_headers(self, headers: HeaderList, ended: bool) -> None: ...

    def response_data(self, data: bytes, flow_controlled: int, end_stream: bool) -> None:
        """`end_stream`: these bytes end the response (HTTP/2's END_STREAM on the same frame)."""

    def response_trailers(self, trailers: HeaderList) -> None: ...

    def response_ended(self) -> None: ...

    def read_done(self) -> None:
        """A read from the upstream is processed: write what it produced downstream, in one go."""

    def request_data_left(self, size: int) -> None:
        """`size` bytes of the request body went to the upstream."""

    def upstream_reset(self, error_code: int) -> None: ...

    def upstream_malformed(self, reason: str) -> None:
        """The upstream broke its protocol (Envoy's 502 UPE)."""

    def upstream_lost(self, unprocessed: bool) -> None:
        """The connection ended before the response did; `unprocessed`: the upstream cannot have processed the
        request (HTTP/2 GOAWAY or REFUSED_STREAM; a reused HTTP/1.1 connection closed before any answer), so it
        may be sent again."""


class StreamOpener(Protocol):
    """Opens upstream streams of one HTTP version, on pooled connections or new ones."""

    def open_now(self, key: Key, headers: HeaderList, end_stream: bool, owner: UpstreamOwner) -> UpstreamStream | None:
        """A stream on a pooled connection with room, if there is one."""

    async def open(self, key: Key, timeout_s: float, headers: HeaderList, end_stream: bool,
                   owner: UpstreamOwner) -> UpstreamStream:
        """A stream on a new connection (or one opened meanwhile); raises OSError or TimeoutError."""
