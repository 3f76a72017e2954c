"""One POST of an encoded batch to a collector, its outcome classified for the retry loop."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from tracemesh_sidecar.config.model import ProviderConfig
from tracemesh_sidecar.export.retry import is_retryable_status, parse_retry_after
from tracemesh_sidecar.export.wire import WireFormat

# Enough of a collector's error answer to say what it disliked, without holding a large body.
ERROR_BODY_BYTES = 512
RESPONSE_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class PostOutcome:
    sent: bool
    retryable: bool = False
    error: str = ""  # what went wrong, stable enough to deduplicate log lines on
    retry_after_s: float | None = None


SENT = PostOutcome(sent=True)


class CollectorClient:
    """Posts request bodies to one provider's URL over a lazily created aiohttp session."""

    def __init__(self, provider: ProviderConfig, wire: WireFormat) -> None:
        self.url = provider.url
        self._headers = {**dict(provider.headers), "Content-Type": wire.content_type}
        self._timeout = aiohttp.ClientTimeout(total=provider.timeout_s, sock_connect=provider.connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def post(self, body: bytes) -> PostOutcome:
        if self._session is None:
            # trust_env stays off: the sidecar's environment may point HTTP_PROXY at the sidecar itself.
            self._session = aiohttp.ClientSession(timeout=self._timeout,
                                                  connector=aiohttp.TCPConnector(limit=2))
        try:
            async with self._session.post(self.url, data=body, headers=self._headers) as response:
                if response.status < 300:
                    await response.content.read(RESPONSE_BODY_LIMIT)
                    return SENT
                message = (await response.content.read(ERROR_BODY_BYTES)).decode("utf-8", "replace").strip()
                return PostOutcome(
                    sent=False,
                    retryable=is_retryable_status(response.status),
                    error=f"HTTP {response.status} {response.reason or ''}: {message or '(no body)'}",
                    retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
                )
        except TimeoutError:
            return PostOutcome(sent=False, retryable=True, error=f"timed out (connect {self._timeout.sock_connect} s, "
                                                                 f"total {self._timeout.total} s)")
        except aiohttp.InvalidURL as error:
            return PostOutcome(sent=False, retryable=False, error=f"invalid collector URL ({error})")
        except (aiohttp.ClientError, OSError) as error:
            return PostOutcome(sent=False, retryable=True, error=f"{type(error).__name__}: {error}")

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
