"""The HTTP/2 settings the proxy advertises and its defences against abusive peers (pure, no I/O).

Envoy's defaults where they bound memory (source/common/http/http2/codec_impl.cc, api/envoy/config/core/v3/
protocol.proto Http2ProtocolOptions), smaller where Envoy's are sized for C++ buffers: a stream's window is
HTTP/2's default 64 KiB (Envoy: 256 MiB), so that a relayed stream holds at most one window of data.
"""

from __future__ import annotations

from typing import Final

from h2.settings import SettingCodes

MAX_CONCURRENT_STREAMS: Final = 100
INITIAL_WINDOW_SIZE: Final = 65535
MAX_FRAME_SIZE: Final = 16384
# Envoy's max_request_headers_kb default (60 KiB) and max_headers_count (100), as for HTTP/1.1.
MAX_HEADER_LIST_SIZE: Final = 60 * 1024
MAX_HEADERS: Final = 100

LOCAL_SETTINGS: Final = {
    SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
    SettingCodes.INITIAL_WINDOW_SIZE: INITIAL_WINDOW_SIZE,
    SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
    SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
    SettingCodes.ENABLE_PUSH: 0,
}

# Rapid reset (CVE-2023-44487), as Envoy's ConnectionManagerImpl::maybeDrainDueToPrematureResets: a stream the
# client resets within this long of its start is premature (overload.premature_reset_min_stream_lifetime_seconds).
PREMATURE_RESET_LIFETIME_S: Final = 1.0
PREMATURE_RESET_TOTAL_STREAM_COUNT: Final = 500  # overload.premature_reset_total_stream_count


class PrematureResets:
    """Counts a connection's closed streams and premature resets; says when the connection must be closed."""

    __slots__ = ("closed", "premature")

    def __init__(self) -> None:
        self.closed = 0
        self.premature = 0

    def stream_closed(self, reset_by_client: bool, lifetime_s: float) -> bool:
        """Record one closed stream; True when the connection is to be closed for too many premature resets."""
        self.closed += 1
        if reset_by_client and lifetime_s < PREMATURE_RESET_LIFETIME_S:
            self.premature += 1
        limit = PREMATURE_RESET_TOTAL_STREAM_COUNT
        if self.closed < limit:
            # Even if every later stream were good, the connection would be closed once `limit` is reached.
            return self.premature * 2 >= limit
        return self.premature * 2 >= self.closed
