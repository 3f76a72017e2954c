"""A real Prometheus server (Debian's `prometheus`) as a pod of the netns cluster, scraping the pods the way
Istio's addon does (istio/istio samples/addons/prometheus.yaml, job `kubernetes-pods`, which
manifests/addons/prometheus.yaml keeps): every pod annotated `prometheus.io/scrape: "true"`, at the
address `<podIP>:<prometheus.io/port>` and the path `prometheus.io/path`, labelled with its labels
(`labelmap __meta_kubernetes_pod_label_(.+)`), `namespace` and `pod`.

The netns cluster has no API server for `kubernetes_sd_configs`, so that relabelling is done here, from the
injected pods' own annotations, into the static targets of the server's configuration file.
"""

from __future__ import annotations

import re
import shutil
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

SYSTEM = "istio-system"
PORT = 9090
LABEL = {"app.kubernetes.io/name": "prometheus"}  # what `tracemesh dashboard prometheus` looks for
SCRAPE_INTERVAL = "1s"  # Istio's addon scrapes every 15s; the test waits for scrapes, so it scrapes often
_NOT_A_LABEL_CHARACTER = re.compile(r"[^a-zA-Z0-9_]")


def unavailable() -> str | None:
    """Why this machine cannot run a Prometheus server and promtool, or None."""
    missing = [tool for tool in ("prometheus", "promtool") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found; apt-get install prometheus (Debian's package has both)"
    return None


def _label_name(name: str) -> str:
    """Kubernetes service discovery's meta label names: every character not allowed in a label becomes `_`."""
    return _NOT_A_LABEL_CHARACTER.sub("_", name)


def scrape_targets(pods: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The `kubernetes-pods` job's relabelling of each pod, as static_configs entries."""
    targets = []
    for pod in pods:
        metadata = pod["metadata"]
        annotations = metadata.get("annotations") or {}
        if annotations.get("prometheus.io/scrape") != "true":
            continue
        labels = {_label_name(key): str(value) for key, value in (metadata.get("labels") or {}).items()}
        labels.update(namespace=metadata["namespace"], pod=metadata["name"])
        if path := annotations.get("prometheus.io/path"):
            labels["__metrics_path__"] = path
        address = f"{pod['status']['podIP']}:{annotations['prometheus.io/port']}"
        targets.append({"targets": [address], "labels": labels})
    return targets


def write_config(directory: Path, pods: Iterable[Mapping[str, Any]]) -> Path:
    config = {"global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL},
              "scrape_configs": [{"job_name": "kubernetes-pods", "honor_labels": True,
                                  "static_configs": scrape_targets(pods)}]}
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def prometheus_pod(directory: Path, pods: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The server's pod (not injected: Istio's addon opts out with sidecar.istio.io/inject "false")."""
    config = write_config(directory, pods)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "prometheus-netns", "namespace": SYSTEM,
                         "labels": {**LABEL, "sidecar.istio.io/inject": "false"}},
            "spec": {"containers": [{
                "name": "prometheus-server", "image": "docker.io/prom/prometheus",
                "command": ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
                            f"--web.listen-address=0.0.0.0:{PORT}"],
                "ports": [{"containerPort": PORT}],
                "readinessProbe": {"httpGet": {"path": "/-/ready", "port": PORT}},
            }]}}


async def query(session: aiohttp.ClientSession, base_url: str, promql: str) -> list[dict[str, Any]]:
    """Prometheus's HTTP API /api/v1/query: the instant vector's samples."""
    async with session.get(f"{base_url}/api/v1/query?query={urllib.parse.quote(promql)}") as response:
        body = await response.json()
        assert response.status == 200 and body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


async def scalar(session: aiohttp.ClientSession, base_url: str, promql: str) -> float | None:
    """The value of a one-sample query (a `sum(...)`), None when it has no sample."""
    result = await query(session, base_url, promql)
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


async def targets_up(session: aiohttp.ClientSession, base_url: str) -> dict[str, str]:
    """Each active target's scrape URL and health (`up`, `down`, `unknown` before its first scrape)."""
    async with session.get(f"{base_url}/api/v1/targets") as response:
        body = await response.json()
        return {target["scrapeUrl"]: target["health"] for target in body["data"]["activeTargets"]}
