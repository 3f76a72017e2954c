"""The control plane assembled: the kopf operator, the config push server (15010) and the webhook (15017).

One asyncio loop runs all three, sharing one ConfigHub (what the handlers compile, the
discovery server serves) and kopf's namespace index (what the webhook decides injection by).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
from aiohttp import web

from tracemesh_operator import handlers
from tracemesh_operator.discovery import server as discovery_server
from tracemesh_operator.discovery.hub import ConfigHub
from tracemesh_operator.injection import certs, webhook
from tracemesh_operator.injection.mutation import DEFAULT_DISCOVERY_ADDRESS, InjectionSettings
from tracemesh_operator.kube_api import KubeApi
from tracemesh_operator.mesh_source import mesh_source
from tracemesh_operator.registry_sync import RegistrySync
from tracemesh_operator.state import DEFAULT_MESH_CONFIG, MeshState
from tracemesh_sidecar.config import ConfigError

log = logging.getLogger(__name__)
Flag = asyncio.Event | threading.Event  # what kopf accepts as stop and ready flags


@dataclass(frozen=True, slots=True)
class Options:
    host: str = "0.0.0.0"
    discovery_port: int = discovery_server.DEFAULT_PORT
    webhook_port: int | None = webhook.DEFAULT_PORT  # None: no webhook (injection done elsewhere or offline)
    namespaces: tuple[str, ...] = ()  # empty: the whole cluster
    peering: str | None = None  # None: standalone, no kopf peering objects (one replica)
    liveness: str | None = "http://0.0.0.0:8080/healthz"
    discovery_address: str = DEFAULT_DISCOVERY_ADDRESS  # what injected sidecars subscribe to
    mesh_config: str = DEFAULT_MESH_CONFIG  # `namespace/name` of the MeshConfig in force
    cert_dir: Path | None = None  # a mounted tls.crt/tls.key/ca.crt; else a self-signed CA is made
    work_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "tracemesh-webhook")
    proxy_image: str = InjectionSettings().proxy_image


class ControlPlane:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.hub = ConfigHub()
        # The operator's environment is where provider headers' envName are read, as istiod reads its own.
        state = MeshState(self.hub, options.discovery_address, options.mesh_config, environ=os.environ)
        self.memo = kopf.Memo(state=state, registry_sync=RegistrySync(state), kube=KubeApi(), ca_pem=None,
                              # what the Deployment of a Gateway API Gateway runs (gateway_api_objects)
                              proxy_image=options.proxy_image, discovery_address=options.discovery_address)
        self.discovery_port: int | None = None
        self.webhook_port: int | None = None

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        index = self.memo.get("namespaces")
        store = index.get(namespace) if index is not None else None
        if not store:
            # Unknown means "not read yet", not "unlabelled": refusing beats starting a pod without its sidecar.
            raise ConfigError("request.namespace", f"namespace {namespace!r} is not known to the operator yet",
                              "retry in a few seconds, once the operator has read the cluster")
        return dict(next(iter(store)))

    async def run(self, stop_flag: Flag | None = None, ready_flag: Flag | None = None) -> None:
        """Serves until `stop_flag` is set (or the task is cancelled); `ready_flag` is set once all serve.

        The servers' ports (`discovery_port`, `webhook_port`) are known by then.
        """
        options = self.options
        runners: list[web.AppRunner] = []
        try:
            discovery = await discovery_server.start_server(self.hub, options.host, options.discovery_port)
            runners.append(discovery)
            self.discovery_port = discovery_server.bound_port(discovery)
            if options.webhook_port is not None:
                runners.append(await self._start_webhook(options.webhook_port))
            await kopf.operator(
                registry=handlers.registry, settings=_settings(), memo=self.memo,
                standalone=options.peering is None, peering_name=options.peering,
                clusterwide=not options.namespaces, namespaces=options.namespaces,
                liveness_endpoint=options.liveness, stop_flag=stop_flag, ready_flag=ready_flag)
        finally:
            for runner in runners:
                await runner.cleanup()

    async def _start_webhook(self, port: int) -> web.AppRunner:
        certificate = certs.load_or_create(self.options.cert_dir, self.options.work_dir)
        self.memo.ca_pem = certificate.ca_pem
        settings = InjectionSettings(proxy_image=self.options.proxy_image, init_image=self.options.proxy_image,
                                     discovery_address=self.options.discovery_address,
                                     mesh_default_config=MeshDefaultConfig(self.memo, self.options.mesh_config))
        app = webhook.create_app(self.namespace_labels, settings)
        runner = await webhook.start_server(app, certs.server_ssl_context(certificate), self.options.host, port)
        self.webhook_port = int(runner.addresses[0][1])
        return runner


class MeshDefaultConfig(Mapping[str, Any]):
    """The mesh config's `defaultConfig` as the operator sees it at each read (kopf keeps the indexes that the
    startup handler put in the memo current): a pod is injected with the ProxyConfig in force when it is created."""

    def __init__(self, memo: kopf.Memo, mesh_config: str) -> None:
        self._memo = memo
        self._mesh_config = mesh_config

    def _current(self) -> Mapping[str, Any]:
        source = mesh_source(self._memo.get("meshconfigs") or {}, self._memo.get("mesh_configmaps") or {},
                             self._mesh_config)
        default_config = source.spec.get("defaultConfig") if source is not None else None
        return default_config if isinstance(default_config, Mapping) else {}

    def __getitem__(self, key: str) -> Any:
        return self._current()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())


def _settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # Only explicit Warnings (rejected Telemetry/MeshConfig) become Kubernetes Events, not routine logs.
    settings.posting.level = logging.WARNING
    return settings
