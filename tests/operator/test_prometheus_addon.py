"""manifests/addons/prometheus.yaml (Istio's addon, one job added) finds every injected sidecar's metrics exactly
once, and `tracemesh dashboard prometheus` finds its pod.

The addon's relabelling is run here, with Prometheus's semantics for the actions it uses (keep, drop, replace,
labelmap: regex anchored at both ends, source labels joined by `;`, `$1` for groups), on the targets Kubernetes
service discovery (role pod) makes of a pod: one per container port, `__address__` `<podIP>:<port>`, meta labels
with every character a label name cannot hold turned into `_`. Debian's promtool cannot check the file itself:
its build has no Kubernetes service discovery.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tracemesh_cli.dashboard import DASHBOARDS
from tracemesh_operator.injection.mutation import InjectionSettings, Mutation, inject
from tracemesh_operator.injection.patch import apply_patch

ADDON = Path(__file__).resolve().parents[2] / "manifests/addons/prometheus.yaml"
POD_IP = "10.1.2.3"


def addon() -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(ADDON.read_text()) if document]


def scrape_jobs() -> dict[str, dict[str, Any]]:
    [config_map] = [document for document in addon() if document["kind"] == "ConfigMap"]
    config = yaml.safe_load(config_map["data"]["prometheus.yml"])
    return {job["job_name"]: job for job in config["scrape_configs"]}


def _meta(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def discovered(pod: dict[str, Any]) -> list[dict[str, str]]:
    """kubernetes_sd_configs role pod: a target per container port of every container and init container."""
    metadata = pod["metadata"]
    common = {"__meta_kubernetes_namespace": metadata["namespace"], "__meta_kubernetes_pod_name": metadata["name"],
              "__meta_kubernetes_pod_ip": POD_IP, "__meta_kubernetes_pod_phase": "Running",
              **{f"__meta_kubernetes_pod_annotation_{_meta(k)}": v
                 for k, v in (metadata.get("annotations") or {}).items()},
              **{f"__meta_kubernetes_pod_label_{_meta(k)}": v for k, v in metadata["labels"].items()}}
    targets = []
    for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
        for port in container.get("ports", []):
            targets.append({**common, "__address__": f"{POD_IP}:{port['containerPort']}",
                            "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                            "__metrics_path__": "/metrics", "__scheme__": "http"})
    return targets


def relabel(job: dict[str, Any], labels: dict[str, str]) -> dict[str, str] | None:
    labels = {**labels, "__metrics_path__": job.get("metrics_path", labels["__metrics_path__"])}
    for rule in job["relabel_configs"]:
        # A YAML `regex: true` is the string "true" to Prometheus (a Go string field).
        pattern = rule.get("regex", "(.*)")
        pattern = "true" if pattern is True else pattern
        action, regex = rule.get("action", "replace"), re.compile(f"^(?:{pattern})$")
        value = ";".join(labels.get(name, "") for name in rule.get("source_labels", []))
        if action == "keep" and not regex.match(value):
            return None
        if action == "drop" and regex.match(value):
            return None
        if action == "replace" and (match := regex.match(value)):
            replacement = re.sub(r"\$(\d+)", r"\\\1", rule.get("replacement", "$1"))
            labels[rule["target_label"]] = match.expand(replacement)
        if action == "labelmap":
            labels.update({regex.sub(rule.get("replacement", "$1").replace("$1", r"\1"), name): value
                           for name, value in list(labels.items()) if regex.match(name)})
    return labels


def scraped(pod: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(job, address, path) of every distinct scrape the addon makes of the pod (equal targets are one)."""
    return {(name, labels["__address__"], labels["__metrics_path__"])
            for name, job in scrape_jobs().items() if "kubernetes_sd_configs" in job
            and {sd["role"] for sd in job["kubernetes_sd_configs"]} == {"pod"}
            for target in discovered(pod) if (labels := relabel(job, target)) is not None}


def injected_pod(annotations: dict[str, str]) -> dict[str, Any]:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "reviews-v1-abc", "namespace": "default", "annotations": annotations,
                        "labels": {"app": "reviews", "version": "v1"}},
           "spec": {"containers": [{"name": "reviews", "image": "reviews",
                                    "ports": [{"containerPort": 9080}, {"containerPort": 8080, "name": "metrics"}]}]}}
    mutation = inject(pod, {"istio-injection": "enabled"}, InjectionSettings())
    assert isinstance(mutation, Mutation)
    patched: dict[str, Any] = apply_patch(pod, mutation.patch)
    return patched


def test_an_injected_pod_is_annotated_as_istios_prometheus_scrapes_and_its_sidecar_scraped_once() -> None:
    pod = injected_pod({})
    annotations = pod["metadata"]["annotations"]
    assert {key: annotations[key] for key in ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path")} == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "15090", "prometheus.io/path": "/stats/prometheus"}
    assert scraped(pod) == {("kubernetes-pods", f"{POD_IP}:15090", "/stats/prometheus")}


def test_a_pod_with_its_own_prometheus_annotations_keeps_them_and_its_sidecar_is_scraped_by_envoy_stats() -> None:
    own = {"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}
    pod = injected_pod(own)
    assert {key: pod["metadata"]["annotations"][key] for key in own} == own
    assert scraped(pod) == {("kubernetes-pods", f"{POD_IP}:8080", "/metrics"),
                            ("envoy-stats", f"{POD_IP}:15090", "/stats/prometheus")}


def test_merge_metrics_off_leaves_the_pod_unannotated() -> None:
    pod = injected_pod({"prometheus.istio.io/merge-metrics": "false"})
    assert "prometheus.io/scrape" not in pod["metadata"]["annotations"]
    assert scraped(pod) == {("envoy-stats", f"{POD_IP}:15090", "/stats/prometheus")}


def test_the_ingress_gateways_proxy_is_scraped_by_its_port_name() -> None:
    """Gateways are not injected (no annotations): the `http-envoy-prom` port is what finds them."""
    manifest = ADDON.parents[1] / "ingressgateway.yaml"
    [deployment] = [document for document in yaml.safe_load_all(manifest.read_text())
                    if document and document["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    pod = {"metadata": {**template["metadata"], "name": "istio-ingressgateway-1", "namespace": "istio-system"},
           "spec": template["spec"]}
    assert scraped(pod) == {("envoy-stats", f"{POD_IP}:15090", "/stats/prometheus")}


def test_tracemesh_dashboard_prometheus_finds_the_addons_pod_and_port() -> None:
    [deployment] = [document for document in addon() if document["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    dashboard = DASHBOARDS["prometheus"]
    key, _, value = dashboard.selector.partition("=")
    assert template["metadata"]["labels"][key] == value
    assert template["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    ports = {port["containerPort"] for container in template["spec"]["containers"] for port in container["ports"]}
    assert dashboard.ui_port in ports
