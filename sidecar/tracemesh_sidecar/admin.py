"""The sidecar's admin (15000), health (15021) and Prometheus (15090) endpoints. Not on the request path.

- admin, bound to 127.0.0.1 only: GET /config_dump (the ProxyConfig in force, with its version),
  /stats (Envoy-style text), /clusters (routes and pools), plus /ready and /stats/prometheus;
  POST /drain starts the inbound drain now (the native sidecar's preStop hook, as pilot-agent's
  `request POST drain`: the pod is shutting down; SIGTERM comes once the apps have exited);
- health: GET /healthz/ready, 200 once a config is in force and its listeners are up, 503 before
  and from the start of a drain on (the endpoints controller then takes the pod out of Services);
- prometheus: GET /stats/prometheus: Istio's standard metrics and the proxy's counters (telemetry/metrics.py).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from tracemesh_sidecar.config.model import Listeners, dump_proxy_config

if TYPE_CHECKING:
    from tracemesh_sidecar.proxy.runtime import Runtime

log = logging.getLogger("tracemesh.proxy")

ROLES = ("admin", "health", "prometheus")
OPENMETRICS = "application/openmetrics-text"
OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class AdminServers:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._runners: dict[str, tuple[str, web.AppRunner]] = {}

    async def apply(self, listeners: Listeners) -> None:
        """Bind each endpoint whose address changed (raises OSError when one cannot be bound)."""
        for role in ROLES:
            address: str | None = getattr(listeners, role)
            current = self._runners.get(role)
            if current is not None and current[0] == address:
                continue
            if current is not None:
                await current[1].cleanup()
                del self._runners[role]
            if address is not None:
                self._runners[role] = (address, await self._start(role, address))

    def bound_port(self, role: str) -> int:
        """The port an endpoint is bound to (tests bind port 0)."""
        addresses = self._runners[role][1].addresses
        return int(addresses[0][1])

    async def close(self) -> None:
        for _, runner in self._runners.values():
            await runner.cleanup()
        self._runners.clear()

    async def _start(self, role: str, address: str) -> web.AppRunner:
        host, _, port = address.rpartition(":")
        app = web.Application()
        if role == "admin":
            app.router.add_get("/config_dump", self._config_dump)
            app.router.add_get("/stats", self._stats)
            app.router.add_get("/clusters", self._clusters)
            app.router.add_get("/ready", self._ready)
            app.router.add_get("/stats/prometheus", self._prometheus)
            app.router.add_post("/drain", self._drain)
        elif role == "health":
            app.router.add_get("/healthz/ready", self._ready)
        else:
            app.router.add_get("/stats/prometheus", self._prometheus)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, host.strip("[]"), int(port), reuse_address=True).start()
        except OSError:
            await runner.cleanup()
            raise
        return runner

    async def _config_dump(self, request: web.Request) -> web.Response:
        config = self._runtime.config
        if config is None:
            return web.json_response({"error": "no config in force yet"}, status=503)
        return web.Response(text=json.dumps(dump_proxy_config(config), indent=2) + "\n",
                            content_type="application/json")

    async def _stats(self, request: web.Request) -> web.Response:
        return web.Response(text=self._runtime.stats.render_text())

    async def _clusters(self, request: web.Request) -> web.Response:
        return web.json_response(self._runtime.clusters())

    async def _ready(self, request: web.Request) -> web.Response:
        if self._runtime.ready:
            return web.Response(text="LIVE\n")
        reason = "draining" if self._runtime.draining else "no config in force"
        return web.Response(text=f"NOT READY: {reason}\n", status=503)

    async def _drain(self, request: web.Request) -> web.Response:
        self._runtime.drain_inbound()
        return web.Response(text="draining inbound\n")

    async def _prometheus(self, request: web.Request) -> web.Response:
        """Istio's standard metrics, then the proxy's own counters; OpenMetrics when the scraper asks for it."""
        openmetrics = OPENMETRICS in request.headers.get("Accept", "")
        runtime = self._runtime
        text = runtime.metrics.render(openmetrics) + runtime.stats.render_prometheus(openmetrics)
        if openmetrics:
            return web.Response(body=(text + "# EOF\n").encode(), headers={"Content-Type": OPENMETRICS_TYPE})
        return web.Response(body=text.encode(), headers={"Content-Type": PROMETHEUS_TYPE})
