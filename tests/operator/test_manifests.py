"""manifests/: every object validates (Kubernetes' own schemas; our CRs against our CRDs), and what an SRE relies on."""

from __future__ import annotations

import argparse
import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate
import pytest
import yaml

from tracemesh_operator import cli

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
KUBERNETES_VERSION = kubernetes_validate.latest_version()
SEED_TELEMETRY = REPO / "samples" / "bookinfo" / "telemetry.yaml"
SAMPLE_MESHCONFIG = REPO / "samples" / "bookinfo" / "meshconfig.yaml"
ISTIO_FIXTURES = REPO / "tests" / "fixtures" / "istio"
ISTIO_TELEMETRY_CRD = ISTIO_FIXTURES / "api" / "kubernetes" / "telemetry-crd.yaml"
ISTIO_TRACING_TESTS = ISTIO_FIXTURES / "tests" / "integration" / "telemetry" / "tracing"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomized() -> list[Path]:
    return [MANIFESTS / name for name in documents(MANIFESTS / "kustomization.yaml")[0]["resources"]]


def installed() -> list[dict[str, Any]]:
    return [doc for path in kustomized() for doc in documents(path)]


def crd(plural_group: str) -> dict[str, Any]:
    return next(d for d in documents(MANIFESTS / "crds" / f"{plural_group}.yaml"))


def schema(crd_file: str, version: str) -> dict[str, Any]:
    versions = {v["name"]: v for v in crd(crd_file)["spec"]["versions"]}
    result: dict[str, Any] = versions[version]["schema"]["openAPIV3Schema"]
    return result


def custom_resource_errors(doc: dict[str, Any]) -> list[str]:
    group, version = doc["apiVersion"].split("/")
    crd_file = {"telemetry.istio.io": "telemetry", "tracemesh.io": "meshconfig"}[group]
    validator = jsonschema.Draft7Validator(schema(crd_file, version))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_kubectl_kustomize_builds_what_the_kustomization_lists() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    built = subprocess.run([kubectl, "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=60,
                           check=True).stdout
    names = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(built) if d)
    assert names == sorted((d["kind"], d["metadata"]["name"]) for d in installed())


def test_kustomization_lists_every_manifest_and_nothing_missing() -> None:
    listed = set(kustomized())
    assert all(path.is_file() for path in listed)
    # addons/ and gateway-api/ are applied on their own (as Istio's docs install the Gateway API CRDs).
    on_disk = {p for p in MANIFESTS.rglob("*.yaml")
               if p.name != "kustomization.yaml" and not {"addons", "gateway-api"} & set(p.parts)}
    assert on_disk == listed


@pytest.mark.parametrize("doc", installed(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_installed_object_validates(doc: dict[str, Any]) -> None:
    if doc["apiVersion"].split("/")[0] in ("telemetry.istio.io", "tracemesh.io"):
        assert custom_resource_errors(doc) == []
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_telemetry_crd_serves_v1_and_v1alpha1_with_one_schema() -> None:
    telemetry = crd("telemetry")
    assert telemetry["spec"]["group"] == "telemetry.istio.io" and telemetry["spec"]["scope"] == "Namespaced"
    versions = {v["name"]: v for v in telemetry["spec"]["versions"]}
    assert set(versions) == {"v1", "v1alpha1"}
    assert versions["v1"]["storage"] and not versions["v1alpha1"]["storage"]
    assert all(v["served"] and v["subresources"] == {"status": {}} for v in versions.values())
    assert schema("telemetry", "v1") == schema("telemetry", "v1alpha1")


def test_the_telemetry_spec_schema_is_istios_own_cel_rules_included() -> None:
    """What the API server accepts and rejects in a Telemetry is exactly what it does with Istio's CRD."""
    [istio] = documents(ISTIO_TELEMETRY_CRD)
    for version in istio["spec"]["versions"]:
        theirs = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        assert schema("telemetry", version["name"])["properties"]["spec"] == theirs
    assert {v["name"] for v in istio["spec"]["versions"]} == {v["name"] for v in crd("telemetry")["spec"]["versions"]}
    assert istio["spec"]["names"] == crd("telemetry")["spec"]["names"]


def test_meshconfig_crd_has_istio_field_names_and_status() -> None:
    meshconfig = crd("meshconfig")
    assert meshconfig["spec"]["group"] == "tracemesh.io"
    [version] = meshconfig["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert {"enableTracing", "defaultConfig", "extensionProviders", "defaultProviders", "rootNamespace"} <= set(spec)
    assert set(spec["extensionProviders"]["items"]["properties"]) == {"name", "zipkin", "opentelemetry", "jaeger"}


def _meshconfig(mesh: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "tracemesh.io/v1alpha1", "kind": "MeshConfig",
            "metadata": {"name": "default", "namespace": "istio-system"}, "spec": mesh}


@pytest.mark.parametrize("suite", ["otelcollector", "zipkin"])
def test_the_meshconfig_schema_accepts_istios_own_test_mesh_configs(suite: str) -> None:
    values = documents(ISTIO_TRACING_TESTS / suite / "control-plane-values.yaml")[0]
    assert custom_resource_errors(_meshconfig(values["meshConfig"])) == []


def _provider(body: dict[str, Any], kind: str = "opentelemetry") -> dict[str, Any]:
    return _meshconfig({"extensionProviders": [{"name": "p", kind: {"service": "otel.ns.svc", "port": 4317, **body}}]})


MESHCONFIG_SHAPES = [
    ("grpc with timeout and envName metadata", _provider(
        {"grpc": {"timeout": "1m30s", "initialMetadata": [{"name": "Authorization", "envName": "TOKEN"}]}}), []),
    ("resource detectors, dynatrace sampler, enrichment", _provider(
        {"resourceDetectors": {"environment": {}, "dynatrace": {}}, "dynatraceSampler": {"tenant": "t", "clusterId": 1},
         "serviceAttributeEnrichment": "OTEL_SEMANTIC_CONVENTIONS"}), []),
    ("snake_case spelling, as protobuf's JSON reader takes it", _provider({"resource_detectors": {"environment": {}}}),
     []),
    ("zipkin headers from the environment", _provider({"headers": [{"name": "a", "envName": "A"}]}, "zipkin"), []),
    ("a timeout that is no duration", _provider({"grpc": {"timeout": "soon"}}), ["soon"]),
    ("an unknown enrichment", _provider({"serviceAttributeEnrichment": "BOTH"}), ["BOTH"]),
    ("a header without a name", _provider({"http": {"path": "/", "headers": [{"value": "v"}]}}), ["'name'"]),
    ("port 0", _provider({"port": 0}), ["0"]),
]


@pytest.mark.parametrize(("doc", "words"), [c[1:] for c in MESHCONFIG_SHAPES], ids=[c[0] for c in MESHCONFIG_SHAPES])
def test_the_meshconfig_schema_takes_istios_provider_fields(doc: dict[str, Any], words: list[str]) -> None:
    errors = custom_resource_errors(doc)
    assert bool(errors) == bool(words), errors
    assert all(any(word in error for error in errors) for word in words), errors


def test_the_meshconfig_schema_rejects_grpc_with_http_and_value_with_env_name_as_istio_does() -> None:
    items = schema("meshconfig", "v1alpha1")["properties"]["spec"]["properties"]["extensionProviders"]["items"]
    otel = items["properties"]["opentelemetry"]
    assert otel["x-kubernetes-validations"] == [{"rule": "!(has(self.http) && has(self.grpc))",
                                                 "message": "OpenTelemetryTracingProvider cannot specify both grpc "
                                                            "and http"}]
    header = otel["properties"]["grpc"]["properties"]["initialMetadata"]["items"]
    assert header["x-kubernetes-validations"][0]["rule"] == "!(has(self.value) && has(self.envName))"


def test_the_seed_and_sample_resources_apply_as_written() -> None:
    if not SEED_TELEMETRY.is_file() or not SAMPLE_MESHCONFIG.is_file():
        pytest.skip("samples/bookinfo not present")
    for doc in documents(SEED_TELEMETRY) + documents(SAMPLE_MESHCONFIG):
        assert custom_resource_errors(doc) == []


def _seed() -> dict[str, Any]:
    return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
            "metadata": {"name": "mesh-default", "namespace": "istio-system"},
            "spec": {"tracing": [{"providers": [{"name": "zipkin"}], "randomSamplingPercentage": 100}]}}


def _with(path: list[str | int], value: Any) -> dict[str, Any]:
    doc = _seed()
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


REJECTED_BY_SCHEMA = [
    ("sampling 150", _with(["spec", "tracing", 0, "randomSamplingPercentage"], 150), "150"),
    ("sampling -1", _with(["spec", "tracing", 0, "randomSamplingPercentage"], -1), "-1"),
    ("empty provider name", _with(["spec", "tracing", 0, "providers"], [{"name": ""}]), "non-empty"),
    ("provider without a name", _with(["spec", "tracing", 0, "providers"], [{}]), "'name' is a required property"),
    ("unknown match mode", _with(["spec", "tracing", 0, "match"], {"mode": "INBOUND"}), "INBOUND"),
    ("custom tag with two sources", _with(["spec", "tracing", 0, "customTags"],
                                          {"t": {"literal": {"value": "a"}, "header": {"name": "h"}}}), "valid"),
    ("custom tag literal without value", _with(["spec", "tracing", 0, "customTags"], {"t": {"literal": {}}}), "value"),
    ("sampling as text", _with(["spec", "tracing", 0, "randomSamplingPercentage"], "100%"), "number"),
    ("disableSpanReporting as text", _with(["spec", "tracing", 0, "disableSpanReporting"], "yes"), "boolean"),
]


@pytest.mark.parametrize(("doc", "words"), [c[1:] for c in REJECTED_BY_SCHEMA], ids=[c[0] for c in REJECTED_BY_SCHEMA])
def test_the_telemetry_schema_rejects_what_istio_rejects(doc: dict[str, Any], words: str) -> None:
    errors = custom_resource_errors(doc)
    assert errors and any(words in error for error in errors), errors


def test_the_telemetry_schema_accepts_istio_shapes() -> None:
    full = _seed()
    full["spec"]["selector"] = {"matchLabels": {"app": "reviews"}}
    full["spec"]["tracing"][0].update({
        "match": {"mode": "SERVER"}, "disableSpanReporting": True, "useRequestIdForTraceSampling": True,
        "customTags": {"env": {"environment": {"name": "ENV", "defaultValue": "prod"}},
                       "user": {"header": {"name": "x-user"}}, "team": {"literal": {"value": "a"}}}})
    full["spec"]["metrics"] = [{"providers": [{"name": "prometheus"}], "overrides": []}]
    assert custom_resource_errors(full) == []
    several = _with(["spec", "tracing", 0, "providers"], [{"name": "zipkin"}, {"name": "otel"}])
    assert custom_resource_errors(several) == []
    formatter = _with(["spec", "tracing", 0, "customTags"], {"key1": {"formatter": {"value": "%REQ(key1)%"}}})
    assert custom_resource_errors(formatter) == []
    testdata = ISTIO_TRACING_TESTS / "otelcollector" / "testdata"
    for path in sorted(p for p in testdata.glob("*.yaml") if p.name != "echo-gateway.yaml"):  # the Telemetries
        telemetry = dict(documents(path)[0])
        telemetry["metadata"] = dict(telemetry["metadata"], namespace="echo")
        assert custom_resource_errors(telemetry) == [], path.name
    gateway = copy.deepcopy(_seed())
    gateway["spec"]["targetRefs"] = [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}]
    assert custom_resource_errors(gateway) == []


def _deployment() -> dict[str, Any]:
    return next(d for d in installed() if d["kind"] == "Deployment")


def test_the_operator_deployment_is_locked_down_and_probed() -> None:
    pod = _deployment()["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "docker.io/tracemesh/operator:0.1.0"
    assert pod["securityContext"]["runAsNonRoot"] is True
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["readinessProbe"]["httpGet"] and container["livenessProbe"]["httpGet"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert {p["containerPort"] for p in container["ports"]} >= {15010, 15017}


def test_the_deployment_runs_flags_the_cli_knows() -> None:
    [container] = _deployment()["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["tracemesh", "operator"]
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    options = cli.options_from(parser.parse_args(container["args"]))
    assert options.peering is None and options.namespaces == ()
    assert options.discovery_address == "tracemesh-discovery.istio-system.svc:15010"


def test_services_reach_the_operator_on_15010_and_15017() -> None:
    labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    [container] = _deployment()["spec"]["template"]["spec"]["containers"]
    named_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    targets = {}
    for service in (d for d in installed() if d["kind"] == "Service" and d["metadata"]["name"].startswith("tracemesh")):
        assert service["spec"]["selector"].items() <= labels.items()
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            targets[service["metadata"]["name"]] = named_ports.get(target, target)
    assert targets == {"tracemesh-discovery": 15010, "tracemesh-webhook": 15017}


def test_rbac_is_least_privilege() -> None:
    role = next(d for d in installed() if d["kind"] == "ClusterRole")
    grants = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
              for resource in rule["resources"] for verb in rule["verbs"]}
    assert not any("*" in grant for grant in grants)
    # The operator reads pods and user objects; it writes statuses, Events, the caBundle, the GatewayClass
    # `istio` and each Gateway API Gateway's Deployment and Service.
    writes = {(g, r) for g, r, v in grants if v in ("create", "update", "patch", "delete")}
    assert writes == {("", "events"), ("events.k8s.io", "events"), ("telemetry.istio.io", "telemetries/status"),
                      ("tracemesh.io", "meshconfigs/status"),
                      ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
                      *(("networking.istio.io", f"{plural}/status")
                        for plural in ("gateways", "virtualservices", "destinationrules")),
                      *(("gateway.networking.k8s.io", f"{plural}/status")
                        for plural in ("gatewayclasses", "gateways", "httproutes")),
                      ("gateway.networking.k8s.io", "gatewayclasses"), ("apps", "deployments"), ("", "services")}
    assert not any(v == "delete" for _, _, v in grants)  # owned objects go with their Gateway (garbage collection)
    patch_webhook = [r for r in role["rules"]
                     if "mutatingwebhookconfigurations" in r["resources"] and "patch" in r["verbs"]]
    assert [r["resourceNames"] for r in patch_webhook] == [["tracemesh-sidecar-injector"]]


def test_the_default_meshconfig_points_at_zipkin() -> None:
    meshconfig = next(d for d in installed() if d["kind"] == "MeshConfig")
    assert (meshconfig["metadata"]["namespace"], meshconfig["metadata"]["name"]) == ("istio-system", "default")
    [zipkin] = meshconfig["spec"]["extensionProviders"]
    assert zipkin == {"name": "zipkin", "zipkin": {"service": "zipkin.istio-system.svc.cluster.local", "port": 9411}}
    assert meshconfig["spec"]["defaultProviders"]["tracing"] == ["zipkin"]
