"""The control plane of the netns cluster: the operator's own event core (MeshState) and
ConfigHub, fed the objects kopf's indexes would hold (pods, Telemetry, the MeshConfig, and the
Services and EndpointSlices of the emulated ClusterIPs), with the discovery server (port 15010)
listening inside its own namespace as tracemesh-discovery.istio-system.

Istio's networking resources (Gateway, VirtualService, DestinationRule) and the Gateway API's (Gateway,
HTTPRoute) go through MeshState.networking_changed, as the operator's handlers call it.

Only kopf and the Kubernetes API are left out; what gets compiled, versioned and pushed to
each sidecar is the operator's code.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from netns_net import listening_socket

from tracemesh_operator.compiler.services import SERVICE_NAME_LABEL, slice_key
from tracemesh_operator.discovery.hub import ConfigHub
from tracemesh_operator.discovery.server import DEFAULT_PORT, create_app
from tracemesh_operator.records import object_key, slim_endpoint_slice, slim_service
from tracemesh_operator.state import DEFAULT_MESH_CONFIG, MeshState, World

Body = dict[str, Any]
# (API group, kind) -> the World field that holds the kind, by namespace.
NETWORKING_KINDS = {
    ("networking.istio.io", "Gateway"): "gateways",
    ("networking.istio.io", "VirtualService"): "virtual_services",
    ("networking.istio.io", "DestinationRule"): "destination_rules",
    ("gateway.networking.k8s.io", "Gateway"): "k8s_gateways",
    ("gateway.networking.k8s.io", "HTTPRoute"): "http_routes",
}


class ControlPlane:
    def __init__(self, mesh_spec: Mapping[str, Any], discovery_address: str,
                 environ: Mapping[str, str] | None = None) -> None:
        namespace, name = DEFAULT_MESH_CONFIG.split("/")
        self.hub = ConfigHub()
        # `environ` is the operator's (istiod's) environment, where provider headers' envName are read.
        self.state = MeshState(self.hub, discovery_address, environ=environ or {})
        self.mesh: Body = {"apiVersion": "tracemesh.io/v1alpha1", "kind": "MeshConfig",
                           "metadata": {"name": name, "namespace": namespace}, "spec": copy.deepcopy(dict(mesh_spec))}
        self.pods: dict[str, dict[str, Body]] = {}
        self.telemetries: dict[str, dict[str, Body]] = {}
        self.services: dict[str, list[Body]] = {}
        self.endpoint_slices: dict[str, list[Body]] = {}
        self.networking: dict[str, dict[str, dict[str, Body]]] = {field: {} for field in NETWORKING_KINDS.values()}
        self._created = 0
        self._runner: web.AppRunner | None = None

    def world(self) -> World:
        return World(pods={ns: list(pods.values()) for ns, pods in self.pods.items()},
                     telemetries={ns: list(items.values()) for ns, items in self.telemetries.items()},
                     meshconfigs={DEFAULT_MESH_CONFIG: [self.mesh]},
                     services=self.services, endpoint_slices=self.endpoint_slices,
                     **{field: {ns: list(items.values()) for ns, items in by_namespace.items()}
                        for field, by_namespace in self.networking.items()})

    def service_synced(self, service: Body, endpoint_slice: Body) -> None:
        """A Service and its one EndpointSlice, indexed as the kopf indexes hold them (slim records, slices by
        their Service), then the handlers' call: every sidecar gets the registry that results."""
        self.services[object_key(service)] = [slim_service(service)]
        metadata = endpoint_slice["metadata"]
        key = slice_key(metadata["namespace"], metadata["labels"][SERVICE_NAME_LABEL])
        self.endpoint_slices[key] = [slim_endpoint_slice(endpoint_slice)]
        self.state.services_changed(self.world())

    def pod_added(self, body: Body) -> None:
        namespace = body["metadata"]["namespace"]
        self.pods.setdefault(namespace, {})[body["metadata"]["name"]] = body
        self.state.pod_changed(body, False, self.world())

    def apply_telemetry(self, body: Body) -> None:
        body = copy.deepcopy(body)
        metadata = body.setdefault("metadata", {})
        metadata.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        metadata.setdefault("uid", f"uid-{object_key(body)}")
        self.telemetries.setdefault(metadata["namespace"], {})[metadata["name"]] = body
        self.state.telemetry_changed(body, False, self.world())

    def delete_telemetry(self, namespace: str, name: str) -> None:
        body = self.telemetries[namespace].pop(name)
        self.state.telemetry_changed(body, True, self.world())

    def apply_networking(self, body: Body, namespace: str = "default") -> Body:
        """`kubectl apply -n namespace -f` of one networking resource (a Gateway, VirtualService, DestinationRule,
        HTTPRoute); returns it as stored, with its namespace and a creation time later than the ones before."""
        body = copy.deepcopy(body)
        metadata = body.setdefault("metadata", {})
        metadata.setdefault("namespace", namespace)
        self._created += 1
        metadata.setdefault("creationTimestamp", f"2026-01-01T00:{self._created // 60:02d}:{self._created % 60:02d}Z")
        metadata.setdefault("uid", f"uid-{body['kind']}-{object_key(body)}")
        self.networking[self._field(body)].setdefault(metadata["namespace"], {})[metadata["name"]] = body
        self.state.networking_changed(body, False, self.world())
        return body

    def delete_networking(self, body: Body) -> None:
        metadata = body["metadata"]
        stored = self.networking[self._field(body)][metadata["namespace"]].pop(metadata["name"])
        self.state.networking_changed(stored, True, self.world())

    @staticmethod
    def _field(body: Body) -> str:
        group = str(body.get("apiVersion", "")).partition("/")[0]
        field = NETWORKING_KINDS.get((group, str(body.get("kind"))))
        assert field is not None, f"not a networking resource: {body.get('apiVersion')} {body.get('kind')}"
        return field

    def set_mesh(self, spec: Mapping[str, Any]) -> None:
        self.mesh = {**self.mesh, "spec": copy.deepcopy(dict(spec))}
        self.state.mesh_changed(self.world())

    async def serve(self, netns: str) -> None:
        self._runner = web.AppRunner(create_app(self.hub), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, listening_socket(netns, DEFAULT_PORT)).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
