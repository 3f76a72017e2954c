"""The tracing backends for a cluster (manifests/addons): schema-valid, pinned, on the ports the
sidecars and the dashboards use, and a MeshConfig whose providers the operator accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tracemesh_operator.compiler import read_mesh

REPO = Path(__file__).resolve().parents[2]
ADDONS = REPO / "manifests/addons"
KUBERNETES_VERSION = "1.30"


def documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((ADDONS / name).read_text()) if doc]


def find(name: str, kind: str, object_name: str) -> dict[str, Any]:
    return next(doc for doc in documents(name) if doc["kind"] == kind and doc["metadata"]["name"] == object_name)


@pytest.mark.parametrize("name", ["zipkin.yaml", "jaeger.yaml"])
def test_valid_against_the_kubernetes_schema(name: str) -> None:
    for document in documents(name):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        assert document["metadata"]["namespace"] == "istio-system"


@pytest.mark.parametrize(("name", "deployment", "image"), [("zipkin.yaml", "zipkin", "openzipkin/zipkin:"),
                                                           ("jaeger.yaml", "jaeger", "jaegertracing/jaeger:2.")])
def test_images_are_pinned_and_never_injected(name: str, deployment: str, image: str) -> None:
    template = find(name, "Deployment", deployment)["spec"]["template"]
    container = template["spec"]["containers"][0]
    assert container["image"].startswith(image) and not container["image"].endswith(":latest")
    assert template["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    assert "readinessProbe" in container


def service_ports(name: str, service: str) -> set[int]:
    return {port["port"] for port in find(name, "Service", service)["spec"]["ports"]}


def test_services_where_the_providers_and_dashboards_look() -> None:
    assert service_ports("zipkin.yaml", "zipkin") == {9411}
    assert service_ports("jaeger.yaml", "jaeger-collector") == {4317, 4318}
    assert service_ports("jaeger.yaml", "tracing") == {16686}


def test_meshconfig_providers_compile_and_point_at_the_addons() -> None:
    meshconfig = yaml.safe_load((ADDONS / "meshconfig-providers.yaml").read_text())
    mesh = read_mesh(meshconfig["spec"])
    assert mesh.problems == ()
    # Istio's reading: an opentelemetry provider without `http` is OTLP/gRPC, which Jaeger serves on 4317.
    targets = {provider["name"]: provider for provider in meshconfig["spec"]["extensionProviders"]}
    assert targets["zipkin"]["zipkin"]["service"] == "zipkin.istio-system.svc.cluster.local"
    assert targets["zipkin"]["zipkin"]["port"] in service_ports("zipkin.yaml", "zipkin")
    jaeger = targets["jaeger"]["opentelemetry"]
    assert jaeger["service"] == "jaeger-collector.istio-system.svc.cluster.local"
    # Istio's reading: an opentelemetry provider without `http` is OTLP/gRPC, which Jaeger serves on 4317.
    assert "http" not in jaeger and mesh.providers["jaeger"].transport == "grpc"
    assert jaeger["port"] == 4317 and jaeger["port"] in service_ports("jaeger.yaml", "jaeger-collector")
