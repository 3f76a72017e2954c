"""`tracemesh kube-inject`: the Bookinfo manifest comes out injected and valid against the Kubernetes schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tracemesh_cli.main import main

REPO = Path(__file__).resolve().parents[2]
BOOKINFO = REPO / "samples" / "bookinfo" / "platform" / "kube" / "bookinfo.yaml"
KUBERNETES_VERSION = "1.30"

FIXTURE = """
apiVersion: v1
kind: Pod
metadata: {name: curl, labels: {app: curl}}
spec:
  containers: [{name: curl, image: curlimages/curl:8.10.1, command: [sleep, infinity]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report}
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: report, image: report:1}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: legacy}
spec:
  selector: {matchLabels: {app: legacy}}
  template:
    metadata: {labels: {app: legacy, sidecar.istio.io/inject: "false"}}
    spec:
      containers: [{name: legacy, image: legacy:1}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: b}
"""


def kube_inject(tmp_path: Path, source: Path, *extra: str) -> list[dict[str, Any]]:
    out = tmp_path / "out.yaml"
    assert main(["kube-inject", "-f", str(source), "-o", str(out), *extra]) == 0
    assert "&id0" not in out.read_text()  # plain YAML a reader can follow, no anchors/aliases
    return [d for d in yaml.safe_load_all(out.read_text()) if d is not None]


def pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    if document["kind"] == "Pod":
        return dict(document["spec"])
    if document["kind"] == "CronJob":
        return dict(document["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(document["spec"]["template"]["spec"])


def test_bookinfo_is_injected_and_valid(tmp_path: Path) -> None:
    if not BOOKINFO.is_file():
        pytest.skip(f"{BOOKINFO} not present")
    original = [d for d in yaml.safe_load_all(BOOKINFO.read_text()) if d is not None]
    injected = kube_inject(tmp_path, BOOKINFO)
    assert len(injected) == len(original)
    deployments = [d for d in injected if d["kind"] == "Deployment"]
    assert len(deployments) >= 4
    for document in injected:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    for deployment in deployments:
        spec = pod_spec(deployment)
        assert [c["name"] for c in spec["initContainers"]] == ["istio-init", "istio-proxy"]
        template_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert template_labels["service.istio.io/canonical-name"] == template_labels["app"]
    assert [d for d in injected if d["kind"] != "Deployment"] == [d for d in original if d["kind"] != "Deployment"]


def test_injecting_twice_changes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "in.yaml"
    source.write_text(FIXTURE)
    once = kube_inject(tmp_path, source)
    (tmp_path / "once.yaml").write_text(yaml.safe_dump_all(once))
    assert kube_inject(tmp_path, tmp_path / "once.yaml") == once


def test_pods_cronjobs_and_opt_outs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.yaml"
    source.write_text(FIXTURE)
    pod, cronjob, legacy, configmap = kube_inject(tmp_path, source, "--native-sidecar", "false",
                                                  "--proxy-image", "registry.local/proxy:2")
    # Without native sidecars and holdApplicationUntilProxyStarts, the proxy goes last (Istio's reorderPod).
    assert [c["name"] for c in pod_spec(pod)["containers"]] == ["curl", "istio-proxy"]
    assert pod_spec(pod)["containers"][-1]["image"] == "registry.local/proxy:2"
    assert pod["metadata"]["labels"]["service.istio.io/canonical-name"] == "curl"
    assert [c["name"] for c in pod_spec(cronjob)["containers"]] == ["report", "istio-proxy"]
    assert cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"][
        "service.istio.io/canonical-name"] == "report"  # no labels: the workload's name
    assert "initContainers" not in pod_spec(legacy)
    assert configmap == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                         "data": {"a": "b"}}
    assert "Deployment/legacy left as it is" in capsys.readouterr().err
    for document in (pod, cronjob, legacy, configmap):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_bad_annotation_fails_naming_workload_and_annotation(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.yaml"
    source.write_text(FIXTURE.replace("labels: {app: curl}",
                                      "labels: {app: curl}, annotations: "
                                      "{traffic.sidecar.istio.io/excludeOutboundIPRanges: 'ten'}"))
    assert main(["kube-inject", "-f", str(source)]) == 1
    error = capsys.readouterr().err
    assert "Pod/curl" in error and "excludeOutboundIPRanges" in error and "not an IP range" in error


@pytest.mark.parametrize(("content", "message"), [(None, "cannot read"), ("a: [", "not valid YAML")])
def test_unreadable_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           content: str | None, message: str) -> None:
    source = tmp_path / "in.yaml"
    if content is not None:
        source.write_text(content)
    assert main(["kube-inject", "-f", str(source)]) == 1
    assert message in capsys.readouterr().err


def test_mesh_config_file_sets_the_proxy_config_default_as_istioctls_flag_does(tmp_path: Path) -> None:
    source = tmp_path / "in.yaml"
    source.write_text(FIXTURE)
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text("apiVersion: tracemesh.io/v1alpha1\nkind: MeshConfig\nmetadata: {name: default}\nspec:\n"
                    "  defaultConfig:\n    holdApplicationUntilProxyStarts: true\n    terminationDrainDuration: 9s\n")
    pod = kube_inject(tmp_path, source, "--native-sidecar", "false", "--meshConfigFile", str(mesh))[0]
    proxy = pod_spec(pod)["containers"][0]  # held: first, with the postStart wait
    assert proxy["name"] == "istio-proxy" and "postStart" in proxy["lifecycle"]
    env = {entry["name"]: entry.get("value") for entry in proxy["env"]}
    assert json.loads(env["PROXY_CONFIG"])["terminationDrainDuration"] == "9s"
