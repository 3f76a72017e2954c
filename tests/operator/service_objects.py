"""Service and EndpointSlice bodies as the API server serves them, for the service-registry tests."""

from __future__ import annotations

from typing import Any


def service(namespace: str, name: str, cluster_ip: str, ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-svc-{name}",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                     "selector": {"app": name}, "ports": ports}}


def endpoint_slice(namespace: str, service_name: str, name: str, ports: list[dict[str, Any]],
                   ready: list[str], not_ready: tuple[str, ...] = ()) -> dict[str, Any]:
    endpoints = [{"addresses": [ip], "conditions": {"ready": True}} for ip in ready]
    endpoints += [{"addresses": [ip], "conditions": {"ready": False}} for ip in not_ready]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-eps-{name}",
                         "creationTimestamp": "2026-01-01T00:00:00Z",
                         "labels": {"kubernetes.io/service-name": service_name}},
            "ports": ports, "endpoints": endpoints}
