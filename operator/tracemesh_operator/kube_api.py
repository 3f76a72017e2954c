"""A Kubernetes API session with the credentials kopf logged in with, for the writes kopf has no public call for.

kopf writes only the object a handler was called for; a change to one Telemetry can change
another's Ready condition (the older of two conflicting ones is deleted), and the webhook
configuration's caBundle must be kept in step, so the operator makes these calls itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf

log = logging.getLogger(__name__)
MERGE_PATCH = "application/merge-patch+json"


def object_path(api_version: str, plural: str, namespace: str | None, name: str, subresource: str = "") -> str:
    """The REST path of an object: `/api/v1/...` for the core group, `/apis/{group}/{version}/...` otherwise."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"{prefix}{scope}/{plural}/{name}" + (f"/{subresource}" if subresource else "")


class KubeApi:
    def __init__(self) -> None:
        self._server: str | None = None
        self._session: aiohttp.ClientSession | None = None

    async def connect(self, info: kopf.ConnectionInfo) -> None:
        """Use these credentials from now on (kopf logs in again when a token expires)."""
        await self.close()
        ssl_context = info.as_ssl_context() if info.server.startswith("https:") else None
        self._server = info.server.rstrip("/")
        self._session = aiohttp.ClientSession(
            headers=info.as_http_headers(), timeout=aiohttp.ClientTimeout(total=10),
            connector=aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else True))

    @property
    def server(self) -> str | None:
        return self._server

    @property
    def session(self) -> aiohttp.ClientSession | None:
        return self._session

    async def patch(self, path: str, patch: Mapping[str, Any]) -> bool:
        """Merge-patch; False (logged) when it failed, so that one failed write never stops the others."""
        if self._session is None or self._server is None:
            log.warning("not logged in to the Kubernetes API yet; skipping PATCH %s", path)
            return False
        try:
            async with self._session.patch(self._server + path, json=patch,
                                           headers={"Content-Type": MERGE_PATCH}) as response:
                if response.status == 404:
                    return False  # deleted meanwhile: nothing left to write to
                if response.status >= 400:
                    log.warning("PATCH %s failed: HTTP %d %s", path, response.status, (await response.text())[:300])
                    return False
                return True
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("PATCH %s failed: %s", path, error)
            return False

    async def create_or_patch(self, collection: str, body: Mapping[str, Any]) -> bool:
        """Create the object in `collection` (its REST path), or merge-patch it with `body` if it exists."""
        if self._session is None or self._server is None:
            log.warning("not logged in to the Kubernetes API yet; skipping POST %s", collection)
            return False
        try:
            async with self._session.post(self._server + collection, json=body) as response:
                if response.status != 409:
                    if response.status == 404:
                        log.debug("POST %s: the resource is not served (its CRD is not installed)", collection)
                    elif response.status >= 400:
                        log.warning("POST %s failed: HTTP %d %s", collection, response.status,
                                    (await response.text())[:300])
                    return response.status < 400
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("POST %s failed: %s", collection, error)
            return False
        return await self.patch(f"{collection}/{body['metadata']['name']}", body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
