"""The config push server on port 15010: HTTP long-poll over the ConfigHub.

    GET /v1/proxy-config/{namespace}/{pod}?version=V&applied=A&error=E&wait=30s
        200 + the full ProxyConfig JSON as soon as the pod's version differs from V
        (immediately on first connect, V empty); 304 when `wait` passes with no change.
        `applied` is the version the sidecar runs (its ack) and `error` why it rejected
        the last one it received (its nack); both feed proxy-status.
    GET /v1/proxies      every connected sidecar with its versions (`tracemesh proxy-status`)
    GET /healthz         liveness/readiness

Long-poll rather than a stream: every request is a complete, stateless exchange that any
HTTP tool can replay, and a reconnect after an operator restart needs no protocol state.
"""

from __future__ import annotations

import logging

from aiohttp import web

from tracemesh_operator.discovery.hub import ConfigHub
from tracemesh_sidecar.config.fields import ConfigError, parse_duration

log = logging.getLogger(__name__)

DEFAULT_PORT = 15010
DEFAULT_WAIT_S = 30.0
MAX_WAIT_S = 300.0
MAX_ERROR_CHARS = 500
VERSION_HEADER = "X-Tracemesh-Version"

HUB_KEY = web.AppKey("hub", ConfigHub)


def create_app(hub: ConfigHub) -> web.Application:
    app = web.Application()
    app[HUB_KEY] = hub
    app.router.add_get("/v1/proxy-config/{namespace}/{pod}", _proxy_config)
    app.router.add_get("/v1/proxies", _proxies)
    app.router.add_get("/healthz", _healthz)
    return app


async def start_server(hub: ConfigHub, host: str = "0.0.0.0", port: int = DEFAULT_PORT) -> web.AppRunner:
    """Serves until `await runner.cleanup()`; the bound port is `bound_port(runner)`."""
    # An open long-poll holds nothing worth waiting for at shutdown (the sidecar simply polls
    # again); cancelling the handler of a sidecar that hung up ends its poll in proxy-status at once.
    runner = web.AppRunner(create_app(hub), access_log=None, shutdown_timeout=0.25,
                           handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        return int(address[1])
    raise RuntimeError("the server is not listening")


async def _proxy_config(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    pod_key = f"{request.match_info['namespace']}/{request.match_info['pod']}"
    query = request.query
    try:
        wait_s = min(parse_duration(query.get("wait", DEFAULT_WAIT_S), "wait"), MAX_WAIT_S)
    except ConfigError as error:
        raise web.HTTPBadRequest(text=f"{error}\n") from None
    held = query.get("version") or None
    applied = query.get("applied") or held
    error_text = (query.get("error") or "")[:MAX_ERROR_CHARS] or None
    hub.poll_started(pod_key, request.remote or "unknown", applied, error_text)
    try:
        config = await hub.wait_newer(pod_key, held, wait_s)
    finally:
        hub.poll_ended(pod_key)
    if config is None:
        return web.Response(status=304, headers={VERSION_HEADER: held or ""})
    # Written piece by piece: the registry all pods share (~60 KB at 500 Services) is never joined into a
    # copy per subscriber, which at 1000 sidecars woken at once cost the operator ~130 MB of RSS.
    parts = hub.encoded_parts(pod_key, config)
    response = web.StreamResponse(headers={VERSION_HEADER: config.version})
    response.content_type = "application/json"
    response.content_length = sum(map(len, parts))
    await response.prepare(request)
    try:
        for part in parts:
            await response.write(part)
        await response.write_eof()
    except ConnectionResetError:  # the sidecar went away mid-document (restarted): it polls again
        log.debug("subscriber %s left before its config was sent", pod_key)
    return response


async def _proxies(request: web.Request) -> web.Response:
    rows = request.app[HUB_KEY].connected()
    return web.json_response({"proxies": [row.to_dict() for row in rows]})


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")
