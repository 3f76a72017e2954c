"""Calling another Bookinfo service: a JSON GET that turns every failure into a status code.

The session trusts the environment: in local mode HTTP_PROXY points at the workload's sidecar
(explicit proxy); in a pod there is no proxy variable and iptables captures the connection.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

UNAVAILABLE = 500  # what Istio's productpage reports when no response came back at all


SESSION = web.AppKey("client_session", aiohttp.ClientSession)


async def session_context(app: web.Application) -> AsyncIterator[None]:
    """The app's outbound session (`app[SESSION]`), open while the app runs."""
    async with aiohttp.ClientSession(trust_env=True) as session:
        app[SESSION] = session
        yield


async def get_json(session: aiohttp.ClientSession, url: str, headers: CIMultiDict[str],
                   timeout_s: float) -> tuple[int, Any]:
    """`(200, body)` on success; `(status, None)` for any other status, bad JSON or no answer."""
    try:
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            if response.status != 200:
                return response.status, None
            return 200, json.loads(await response.read())
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return UNAVAILABLE, None
