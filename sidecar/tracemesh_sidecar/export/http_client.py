"""Export over HTTP: one POST of an encoded batch (Zipkin v2 JSON, OTLP/HTTP protobuf) through aiohttp.

Timeouts, beside the total: `connectTimeout` is aiohttp's sock_connect; `readTimeout` its sock_read (the
longest silence while the answer is read, its head included); `sendTimeout` bounds the request's way out:
connecting, writing the body and the answer's head arriving (aiohttp times no write on its own).
"""

from __future__ import annotations

import aiohttp

from tracemesh_sidecar.config.model import ProviderConfig
from tracemesh_sidecar.export.collector_client import (
    ERROR_BODY_BYTES,
    RESPONSE_BODY_LIMIT,
    ExportOutcome,
    PhaseTimedOut,
    accepted,
    phase_timeout,
)
from tracemesh_sidecar.export.retry import is_retryable_status, parse_retry_after
from tracemesh_sidecar.export.wire import WireFormat


class HttpCollectorClient:
    """Posts request bodies to one provider's URL over a lazily created aiohttp session."""

    def __init__(self, provider: ProviderConfig, wire: WireFormat) -> None:
        self.url = provider.url
        self._wire = wire
        self._headers = {**dict(provider.headers), "Content-Type": wire.content_type}
        self._timeout = aiohttp.ClientTimeout(total=provider.timeout_s, sock_connect=provider.connect_timeout_s,
                                              sock_read=provider.read_timeout_s)
        self._send_timeout_s = provider.send_timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def export(self, body: bytes) -> ExportOutcome:
        if self._session is None:
            # trust_env stays off: the sidecar's environment may point HTTP_PROXY at the sidecar itself.
            self._session = aiohttp.ClientSession(timeout=self._timeout,
                                                  connector=aiohttp.TCPConnector(limit=2))
        try:
            async with phase_timeout(self._send_timeout_s, "send"):
                response = await self._session.post(self.url, data=body, headers=self._headers)
            async with response:
                if response.status < 300:
                    return accepted(self._wire.partial_success(await response.content.read(RESPONSE_BODY_LIMIT)))
                message = (await response.content.read(ERROR_BODY_BYTES)).decode("utf-8", "replace").strip()
                return ExportOutcome(
                    sent=False,
                    retryable=is_retryable_status(response.status),
                    error=f"HTTP {response.status} {response.reason or ''}: {message or '(no body)'}",
                    retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
                )
        except PhaseTimedOut as error:
            return ExportOutcome(sent=False, retryable=True, error=str(error))
        except aiohttp.ServerTimeoutError as error:  # sock_connect or sock_read: aiohttp's message says which
            return ExportOutcome(sent=False, retryable=True, error=f"{error} (connect {self._timeout.sock_connect} s, "
                                                                   f"read {self._timeout.sock_read} s)")
        except TimeoutError:
            return ExportOutcome(sent=False, retryable=True, error=f"timed out (connect {self._timeout.sock_connect} "
                                                                   f"s, read {self._timeout.sock_read} s, "
                                                                   f"total {self._timeout.total} s)")
        except aiohttp.InvalidURL as error:
            return ExportOutcome(sent=False, retryable=False, error=f"invalid collector URL ({error})")
        except (aiohttp.ClientError, OSError) as error:
            return ExportOutcome(sent=False, retryable=True, error=f"{type(error).__name__}: {error}")

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
