"""The kind path is wired the same everywhere: the GitHub job runs exactly the make targets a user
runs, and `make -n` shows the whole sequence (these run without kind)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SEQUENCE = ["kind-up", "images", "kind-load", "deploy", "bookinfo", "e2e-kind"]


def workflow_runs(name: str) -> list[str]:
    workflow = yaml.safe_load((REPO / ".github/workflows" / name).read_text())
    (job,) = workflow["jobs"].values()
    return [step["run"].strip() for step in job["steps"] if "run" in step]


def test_the_github_job_runs_exactly_the_make_targets() -> None:
    makes = [run.removeprefix("make ") for run in workflow_runs("e2e-kind.yaml") if run.startswith("make ")]
    assert makes == [*SEQUENCE, "kind-down"]


def test_the_ci_job_runs_ci_run_as_root() -> None:
    assert any(run.startswith("sudo") and run.endswith(".ci/run") for run in workflow_runs("ci.yaml"))


def test_make_dry_run_shows_the_full_sequence() -> None:
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    done = subprocess.run(["make", "-n", *SEQUENCE], cwd=REPO, capture_output=True, text=True, timeout=30, check=True)
    lines = done.stdout.splitlines()
    wanted = ["kind create cluster --name tracemesh --config kind/cluster.yaml",
              "docker build -f images/operator/Dockerfile", "docker build -f images/proxy/Dockerfile",
              "docker build -f samples/bookinfo/Dockerfile --build-arg SERVICE=reviews",
              "kind load docker-image --name tracemesh tracemesh/operator:",
              "kubectl apply -k manifests/", "kubectl apply -f manifests/addons/zipkin.yaml",
              "kubectl label namespace default istio-injection=enabled",
              "kubectl apply -f samples/bookinfo/platform/kube/bookinfo.yaml", "pytest -m kind tests/kind"]
    positions = [next((index for index, line in enumerate(lines) if step in line), -1) for step in wanted]
    assert -1 not in positions, f"missing from make -n: {[w for w, p in zip(wanted, positions, strict=True) if p < 0]}"
    assert positions == sorted(positions), "the steps are out of order"


def test_bookinfo_front_door_is_the_node_port_kind_maps() -> None:
    """The kind tests and the docs send requests to localhost:30080: kind must map the node port
    the Bookinfo NodePort Service uses, and `make bookinfo` must apply that Service."""
    cluster = yaml.safe_load((REPO / "kind/cluster.yaml").read_text())
    mapped = {(mapping["containerPort"], mapping["hostPort"])
              for node in cluster["nodes"] for mapping in node.get("extraPortMappings", [])}
    service = yaml.safe_load((REPO / "samples/bookinfo/networking/productpage-nodeport.yaml").read_text())
    (port,) = service["spec"]["ports"]
    assert (service["spec"]["type"], service["spec"]["selector"]) == ("NodePort", {"app": "productpage"})
    assert (port["nodePort"], 30080) in mapped and port["targetPort"] == 9080
    assert "samples/bookinfo/networking/productpage-nodeport.yaml" in (REPO / "Makefile").read_text()
    assert ":30080" in (REPO / "tests/kind/test_kind_bookinfo.py").read_text()
