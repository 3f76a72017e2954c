"""kmock's KubernetesEmulator set up to host the real operator: for the acceptance tests and the benchmarks.

kmock is a test dependency (the `test` extra); nothing in the operator's run path imports this.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import yaml
from kmock._internal import parsing

# What discovery must list for kopf to watch all the operator watches: kopf starts watching a
# custom resource only once discovery also lists customresourcedefinitions and namespaces.
RESOURCES: dict[str, dict[str, Any]] = {
    "v1/pods": {"kind": "Pod", "namespaced": True},
    "v1/namespaces": {"kind": "Namespace", "namespaced": False},
    "v1/events": {"kind": "Event", "namespaced": True},
    "v1/services": {"kind": "Service", "namespaced": True},
    "v1/configmaps": {"kind": "ConfigMap", "namespaced": True},
    "discovery.k8s.io/v1/endpointslices": {"kind": "EndpointSlice", "namespaced": True},
    "apiextensions.k8s.io/v1/customresourcedefinitions": {"kind": "CustomResourceDefinition", "namespaced": False},
    "admissionregistration.k8s.io/v1/mutatingwebhookconfigurations": {
        "kind": "MutatingWebhookConfiguration", "namespaced": False},
    "telemetry.istio.io/v1/telemetries": {"kind": "Telemetry", "namespaced": True, "subresources": {"status"}},
    "tracemesh.io/v1alpha1/meshconfigs": {"kind": "MeshConfig", "namespaced": True, "subresources": {"status"}},
    "networking.istio.io/v1/gateways": {"kind": "Gateway", "namespaced": True, "subresources": {"status"}},
    "networking.istio.io/v1/virtualservices": {"kind": "VirtualService", "namespaced": True,
                                               "subresources": {"status"}},
    "networking.istio.io/v1/destinationrules": {"kind": "DestinationRule", "namespaced": True,
                                                "subresources": {"status"}},
    "gateway.networking.k8s.io/v1/gatewayclasses": {"kind": "GatewayClass", "namespaced": False,
                                                    "subresources": {"status"}},
    "gateway.networking.k8s.io/v1/gateways": {"kind": "Gateway", "namespaced": True, "subresources": {"status"}},
    "gateway.networking.k8s.io/v1/httproutes": {"kind": "HTTPRoute", "namespaced": True, "subresources": {"status"}},
    "apps/v1/deployments": {"kind": "Deployment", "namespaced": True},
}
_VERBS = {"list", "watch", "get", "create", "patch", "delete"}
_KMOCK_PARSE_PATH = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    """kmock 0.8 reads `/api/v1/namespaces[/NAME]` as a namespace prefix with nothing after it (HTTP 500).

    It is the Namespace resource itself: its list, or the object NAME.
    """
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
        return parsing.ParsedPath("", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None, None)
    return _KMOCK_PARSE_PATH(path)


@contextlib.contextmanager
def operator_ready(emulator: kmock.KubernetesEmulator) -> Iterator[None]:
    """Declares the resources the operator watches and serves Namespace paths, while in the block."""
    for key, info in RESOURCES.items():
        emulator.resources[key] = kmock.ResourceInfo(verbs=_VERBS, **info)
    parsing.parse_path = _parse_path
    try:
        yield
    finally:
        parsing.parse_path = _KMOCK_PARSE_PATH


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig pointing at the emulator: the operator logs in exactly as it does against a cluster."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": server.rstrip("/")}}],
        "users": [{"name": "kmock", "user": {"token": "kmock"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
    }))
    return path
