"""tracemesh's provider extensions (README "Coming from Kong") through the operator: from the MeshConfig, and a
pod's `tracing.tracemesh.io/*` annotations compiled per workload into its proxy config."""

from __future__ import annotations

from typing import Any

import pytest

from tracemesh_operator.compiler import compile_telemetry, read_mesh
from tracemesh_operator.compiler.providers import workload_providers
from tracemesh_operator.records import slim_pod
from tracemesh_operator.workload import proxy_config_for_pod
from tracemesh_sidecar.config import dump_proxy_config, parse_proxy_config

ZIPKIN = {"service": "zipkin.istio-system.svc.cluster.local", "port": 9411}


def mesh(**extensions: Any) -> dict[str, Any]:
    return {"extensionProviders": [{"name": "zipkin", "zipkin": {**ZIPKIN, **extensions}}],
            "defaultProviders": {"tracing": ["zipkin"]}}


def pod(annotations: dict[str, str], name: str = "edge-1") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "labels": {"app": "edge"}, "annotations": annotations},
            "status": {"podIP": "10.244.0.9"}}


def test_mesh_config_extensions_are_read_without_notices_in_either_spelling() -> None:
    read = read_mesh(mesh(header_type="preserve", extraExtract=["jaeger"], tags_header=True, send_timeout="1s"))
    assert read.problems == () and read.notices == ()
    provider = read.providers["zipkin"]
    assert (provider.header_type, provider.extra_extract, provider.tags_header, provider.send_timeout_s) == (
        "preserve", ("jaeger",), "zipkin-tags", 1.0)


def test_a_bad_extension_is_a_mesh_problem_naming_the_field() -> None:
    problem, unknown_default = read_mesh(mesh(headerType="datadog")).problems  # the provider is left out
    assert problem.field == "spec.extensionProviders[0].zipkin.headerType" and "datadog" in problem.problem
    assert unknown_default.field == "spec.defaultProviders.tracing[0]"


def test_pod_annotations_override_the_provider_for_that_pod_only() -> None:
    spec = mesh(headerType="b3")
    compiled = compile_telemetry(spec, [], "default", {"app": "edge"})
    annotated = pod({"tracing.tracemesh.io/header-type": "preserve", "tracing.tracemesh.io/baggage-tags": "a, b",
                     "tracing.tracemesh.io/tags-header": "true", "unrelated/x": "1"})
    # What the operator keeps of the pod (records.slim_pod) still carries the overrides, and only those.
    kept = slim_pod(annotated)
    assert kept["metadata"]["annotations"] == {key: value for key, value in annotated["metadata"]["annotations"].items()
                                               if key.startswith("tracing.tracemesh.io/")}
    config = proxy_config_for_pod(kept, compiled, spec, None, "1")
    [provider] = config.providers
    assert (provider.header_type, provider.baggage_tags, provider.tags_header) == ("preserve", ("a", "b"),
                                                                                   "zipkin-tags")
    assert parse_proxy_config(dump_proxy_config(config)) == config
    plain = proxy_config_for_pod(slim_pod(pod({}, "edge-2")), compiled, spec, None, "1")
    assert plain.providers == compiled.providers and plain.providers[0].header_type == "b3"


@pytest.mark.parametrize(("annotations", "field", "reason"), [
    ({"tracing.tracemesh.io/header-type": "datadog"}, "metadata.annotations.tracing.tracemesh.io/header-type",
     "InvalidAnnotation"),
    ({"tracing.tracemesh.io/extra-extract": "jaeger,zipkin"}, "metadata.annotations.tracing.tracemesh.io/extra-extract",
     "InvalidAnnotation"),
    ({"tracing.tracemesh.io/headertype": "preserve"}, "metadata.annotations.tracing.tracemesh.io/headertype",
     "UnknownAnnotation"),
])
def test_a_wrong_annotation_is_reported_and_leaves_the_mesh_provider(annotations: dict[str, str], field: str,
                                                                     reason: str) -> None:
    providers = read_mesh(mesh()).providers
    compiled = tuple(providers.values())
    result, [problem] = workload_providers(compiled, annotations, "Pod default/edge-1")
    assert result == compiled
    assert (problem.resource, problem.field, problem.reason) == ("Pod default/edge-1", field, reason)
    assert problem.fix
