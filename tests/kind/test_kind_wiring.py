"""The kind path is wired the same everywhere: the GitHub job runs exactly the make targets a user
runs, and `make -n` shows the whole sequence (these run without kind)."""

from __future__ import annotations

import re
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
    assert makes == ["kind-install", *SEQUENCE, "kind-down"]


def test_the_ci_job_runs_ci_run_as_root() -> None:
    assert any(run.startswith("sudo") and run.endswith(".ci/run") for run in workflow_runs("ci.yaml"))


def make_dry_run(*args: str) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make not installed (Debian package make)")
    done = subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.splitlines()


def in_order(lines: list[str], wanted: list[str]) -> None:
    positions = [next((index for index, line in enumerate(lines) if step in line), -1) for step in wanted]
    assert -1 not in positions, f"missing from make -n: {[w for w, p in zip(wanted, positions, strict=True) if p < 0]}"
    assert positions == sorted(positions), "the steps are out of order"


def makefile_value(name: str) -> str:
    (line,) = [line for line in (REPO / "Makefile").read_text().splitlines() if line.startswith(f"{name} ")]
    return line.split("?=", 1)[1].strip()


def test_make_dry_run_shows_the_pinned_archive_based_sequence() -> None:
    """`make -n kind-e2e`: kind at the pinned version, the node image by digest, the images under their
    full names saved to one archive and loaded from it (never `kind load docker-image`, which fails on
    Docker 29's containerd image store), the caBundle awaited before Bookinfo."""
    lines = make_dry_run("kind-e2e")
    node_image = makefile_value("KIND_NODE_IMAGE")
    assert re.fullmatch(r"kindest/node:v[0-9.]+@sha256:[0-9a-f]{64}", node_image), node_image
    in_order(lines, [
        f"kind version | grep -q '^kind {makefile_value('KIND_VERSION')} '",
        "if kind get clusters | grep -qx 'tracemesh'; then",
        f"kind create cluster --name tracemesh --image {node_image} --config kind/cluster.yaml",
        "docker build -f images/operator/Dockerfile -t docker.io/tracemesh/operator:0.1.0 .",
        "docker build -f images/proxy/Dockerfile -t docker.io/tracemesh/proxy:0.1.0 .",
        "docker build -f samples/bookinfo/Dockerfile --build-arg SERVICE=reviews "
        "-t docker.io/tracemesh/bookinfo-reviews:0.1.0",
        "docker image save -o .tracemesh/images-0.1.0.tar docker.io/tracemesh/operator:0.1.0 "
        "docker.io/tracemesh/proxy:0.1.0",
        "kind load image-archive --name tracemesh .tracemesh/images-0.1.0.tar",
        "kubectl kustomize manifests/ | sed",
        "kubectl apply -f manifests/addons/zipkin.yaml",
        "rollout status deployment/tracemesh-operator",
        "get mutatingwebhookconfiguration/tracemesh-sidecar-injector -o jsonpath="
        "'{range .webhooks[*]}{.clientConfig.caBundle}",
        "kubectl label namespace default istio-injection=enabled",
        "samples/bookinfo/platform/kube/bookinfo.yaml | kubectl apply -f -",
        "pytest -m kind tests/kind"])
    assert not [line for line in lines if "load docker-image" in line]
    # Every image a pod asks for is one the archive holds.
    saved = next(line for line in lines if "docker image save" in line).split()[5:]
    assert set(saved) == {f"docker.io/tracemesh/{name}:0.1.0" for name in (
        "operator", "proxy", "bookinfo-productpage", "bookinfo-details", "bookinfo-reviews", "bookinfo-ratings")}


def test_version_reaches_every_image_reference(tmp_path: Path) -> None:
    """`make deploy bookinfo VERSION=…`: the operator, the image its webhook injects, Bookinfo."""
    lines = make_dry_run("deploy", "bookinfo", "VERSION=9.9.9")
    sed = next(line for line in lines if "kubectl kustomize manifests/" in line).split(" | ")[1]
    rendered = subprocess.run(sed, shell=True, input=(REPO / "manifests/operator.yaml").read_text()
                              + (REPO / "samples/bookinfo/platform/kube/bookinfo.yaml").read_text(),
                              capture_output=True, text=True, check=True).stdout
    references = re.findall(r"docker\.io/tracemesh/[a-z-]+:\S+", rendered)
    assert references and all(reference.endswith(":9.9.9") for reference in references), references
    operator = next(doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "Deployment"
                    and doc["metadata"]["name"] == "tracemesh-operator")
    [container] = operator["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["TRACEMESH_PROXY_IMAGE"] == "docker.io/tracemesh/proxy:9.9.9"
    assert "--proxy-image=$(TRACEMESH_PROXY_IMAGE)" in container["args"]


def test_kind_up_keeps_an_existing_cluster(tmp_path: Path) -> None:
    """kind-up run twice: the second run finds the cluster and creates nothing (a stand-in `kind`)."""
    fake = tmp_path / "kind"
    fake.write_text("#!/bin/sh\necho \"$@\" >> " + str(tmp_path / "calls") + "\n"
                    "case \"$1\" in version) echo 'kind " + makefile_value("KIND_VERSION") + " go1.24 linux/amd64';; "
                    "get) echo tracemesh;; esac\n")
    fake.chmod(0o755)
    if shutil.which("make") is None:
        pytest.skip("make not installed (Debian package make)")
    done = subprocess.run(["make", "-s", "kind-up", f"KIND={fake}"], cwd=REPO, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert "exists: kept" in done.stdout
    assert not [call for call in (tmp_path / "calls").read_text().splitlines() if call.startswith("create")]


def test_gateway_url_is_the_ingress_gateways_node_port_kind_maps() -> None:
    """Istio's tasks send requests to $GATEWAY_URL, localhost:8080 on kind: kind maps the node port that
    `make deploy` pins on the ingress gateway Service's http2 port (80 -> 8080), and `make bookinfo`
    applies Bookinfo's gateway file; the node-port detour is gone."""
    cluster = yaml.safe_load((REPO / "kind/cluster.yaml").read_text())
    mapped = {(mapping["containerPort"], mapping["hostPort"], mapping.get("listenAddress"))
              for node in cluster["nodes"] for mapping in node.get("extraPortMappings", [])}
    makefile = (REPO / "Makefile").read_text()
    node_port = int(makefile_value("GATEWAY_NODE_PORT"))
    assert (node_port, 8080, "127.0.0.1") in mapped
    service = next(doc for doc in yaml.safe_load_all((REPO / "manifests/ingressgateway.yaml").read_text())
                   if doc and doc["kind"] == "Service")
    http2 = next(port for port in service["spec"]["ports"] if port["port"] == 80)
    assert (service["metadata"]["name"], service["metadata"]["namespace"]) == ("istio-ingressgateway", "istio-system")
    assert (http2["name"], http2["targetPort"]) == ("http2", 8080)
    assert ('patch service istio-ingressgateway -p \'{"spec":{"ports":[{"port":80,"nodePort":$(GATEWAY_NODE_PORT)}]}}\''
            in makefile)
    assert "kubectl apply -f samples/bookinfo/networking/bookinfo-gateway.yaml" in makefile.replace("$(KUBECTL)",
                                                                                                   "kubectl")
    assert not (REPO / "samples/bookinfo/networking/productpage-nodeport.yaml").exists()
    assert 'GATEWAY_URL = "localhost:8080"' in (REPO / "tests/kind/test_kind_bookinfo.py").read_text()
