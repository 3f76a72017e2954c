"""MeshState and Services: a Service selecting a pod names the pod's inbound port; unrelated changes push nothing."""

from __future__ import annotations

from typing import Any

from tracemesh_operator.discovery.hub import ConfigHub
from tracemesh_operator.state import MeshState, World

MESH: dict[str, Any] = {"apiVersion": "tracemesh.io/v1alpha1", "kind": "MeshConfig",
                        "metadata": {"name": "default", "namespace": "istio-system"},
                        "spec": {"extensionProviders": [{"name": "zipkin", "zipkin": {"service": "zipkin.istio-system",
                                                                                      "port": 9411}}],
                                 "defaultProviders": {"tracing": ["zipkin"]}}}
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server-1", "namespace": "default",
                                                       "labels": {"app": "server"}},
       "spec": {"containers": [{"ports": [{"containerPort": 8090}]}]}, "status": {"podIP": "10.0.0.1"}}


def server_service(port: int, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "server", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"clusterIP": "None", "selector": {"app": "server"}, "ports": [{"port": port, "targetPort": 8090}]},
            "status": status or {}}


def test_a_service_names_the_pods_port_and_a_status_change_pushes_nothing() -> None:
    hub = ConfigHub()
    state = MeshState(hub, None)
    world = World(pods={"default": [POD]}, telemetries={}, meshconfigs={"istio-system/default": [MESH]})
    state.mesh_changed(world)
    before = hub.get("default/server-1")
    assert before is not None and before.inbound.ports[0].service_host is None

    # A headless Service: no registry entry (no ClusterIP), yet it names the port, as Istio's inbound chain.
    with_service = World(pods=world.pods, telemetries={}, meshconfigs=world.meshconfigs,
                         services={"default/server": [server_service(80)]})
    state.services_changed(with_service)
    named = hub.get("default/server-1")
    assert named is not None and named.version != before.version
    assert named.inbound.ports[0].operation(named.node.own_host) == "server.default.svc.cluster.local:80/*"

    status_only = World(pods=world.pods, telemetries={}, meshconfigs=world.meshconfigs,
                        services={"default/server": [server_service(80, {"loadBalancer": {}})]})
    state.services_changed(status_only)
    again = hub.get("default/server-1")
    assert again is not None and again.version == named.version
