"""Where the mesh config comes from: the MeshConfig resource, else Istio's mesh ConfigMap (`istio`, key `mesh`)."""

from __future__ import annotations

from typing import Any

import pytest

from tracemesh_operator.mesh_source import configmap_key, configmap_mesh, mesh_source

MESHCONFIG = {"metadata": {"name": "default", "namespace": "istio-system"}, "spec": {"enableTracing": False}}


def configmap(data: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "istio", "namespace": "istio-system"}, "data": data}


@pytest.mark.parametrize(("data", "spec", "error"), [
    ({"mesh": "enableTracing: true\ndefaultProviders: {tracing: [zipkin]}"},
     {"enableTracing": True, "defaultProviders": {"tracing": ["zipkin"]}}, None),
    ({"mesh": ""}, {}, None),  # Istio's defaults, nothing set
    ({}, {}, "has no key 'mesh'"),
    ({"mesh": "enableTracing: [true"}, {}, "is not YAML"),
    ({"mesh": "- a list"}, {}, "is not a mapping"),
])
def test_the_configmaps_mesh_key_is_read_as_a_meshconfig_document(data: dict[str, Any], spec: dict[str, Any],
                                                                   error: str | None) -> None:
    read, problem = configmap_mesh(configmap(data))
    assert read == spec
    assert (problem is None) == (error is None)
    assert error is None or (problem is not None and error in problem)


def test_precedence_the_meshconfig_resource_then_the_configmap_then_nothing() -> None:
    resources = {"istio-system/default": [MESHCONFIG]}
    configmaps = {"istio-system/istio": [configmap({"mesh": "enableTracing: true"})]}
    both = mesh_source(resources, configmaps, "istio-system/default")
    assert both is not None and both.spec == {"enableTracing": False}
    assert both.shadowed is not None and "ConfigMap istio-system/istio" in both.shadowed
    only_configmap = mesh_source({}, configmaps, "istio-system/default")
    assert only_configmap is not None and only_configmap.spec == {"enableTracing": True}
    assert only_configmap.resource == "ConfigMap istio-system/istio" and only_configmap.shadowed is None
    assert mesh_source({}, {}, "istio-system/default") is None
    # The ConfigMap is looked for in the namespace of the MeshConfig the operator reads (`--meshconfig`).
    assert configmap_key("mesh-root/default") == "mesh-root/istio"
    assert mesh_source({}, configmaps, "mesh-root/default") is None
