"""Everything `make deploy bookinfo` schedules fits the CPU a 2-CPU Docker VM gives kind's one node.

A pod's CPU request is what the scheduler counts (Kubernetes' pod resource formula: the larger of
the biggest ordinary init container and the app containers plus native sidecars), and Bookinfo's
pods are counted as the webhook injects them. kind's own pods request 950m on a v1.3x node
(kubeadm's static pods: kube-apiserver 250m, kube-controller-manager 200m, kube-scheduler 100m,
etcd 100m; coredns 2 x 100m; kindnet 100m).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from tracemesh_operator.injection.mutation import InjectionSettings, Mutation, inject

REPO = Path(__file__).resolve().parents[2]
NODE_CPU_M = 2000  # a 2-CPU Docker VM (Docker Desktop's default); kind reserves none of it
KIND_SYSTEM_PODS_M = 950
DEPLOYED = [*(f"manifests/{name}" for name in yaml.safe_load((REPO / "manifests/kustomization.yaml").read_text())
              ["resources"]),
            "manifests/addons/zipkin.yaml", "manifests/addons/jaeger.yaml"]
INJECTED = ["samples/bookinfo/platform/kube/bookinfo.yaml"]


def millicores(value: Any) -> int:
    text = str(value or "0")
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


def pod_request_m(spec: dict[str, Any]) -> int:
    def request(container: dict[str, Any]) -> int:
        return millicores(container.get("resources", {}).get("requests", {}).get("cpu"))
    inits = spec.get("initContainers", [])
    sidecars = sum(request(c) for c in inits if c.get("restartPolicy") == "Always")
    ordinary_inits = [request(c) for c in inits if c.get("restartPolicy") != "Always"]
    return max([sidecars + sum(request(c) for c in spec["containers"]), *ordinary_inits])


def deployments(path: str) -> list[dict[str, Any]]:
    documents = yaml.safe_load_all((REPO / path).read_text()) if (REPO / path).is_file() else []
    return [doc for doc in documents if doc and doc.get("kind") == "Deployment"]


def injected_spec(template: dict[str, Any]) -> dict[str, Any]:
    pod = {"metadata": template["metadata"], "spec": template["spec"]}
    mutation = inject(pod, {"istio-injection": "enabled"}, InjectionSettings())
    assert isinstance(mutation, Mutation), mutation
    patched: dict[str, Any] = jsonpatch.apply_patch(pod, mutation.patch)
    return dict(patched["spec"])


def test_the_mesh_and_bookinfo_fit_a_two_cpu_kind_node() -> None:
    requests = {f"{doc['metadata']['name']}": pod_request_m(doc["spec"]["template"]["spec"])
                * doc["spec"].get("replicas", 1) for path in DEPLOYED for doc in deployments(path)}
    requests |= {f"{doc['metadata']['name']} (injected)": pod_request_m(injected_spec(doc["spec"]["template"]))
                 * doc["spec"].get("replicas", 1) for path in INJECTED for doc in deployments(path)}
    assert {"tracemesh-operator", "zipkin", "jaeger", "productpage-v1 (injected)"} <= requests.keys()
    # Plus one surge pod: a RollingUpdate (maxSurge 25%, rounded up to 1) starts the new pod first.
    total = KIND_SYSTEM_PODS_M + sum(requests.values()) + max(requests.values())
    assert total <= NODE_CPU_M, f"{total}m requested on a {NODE_CPU_M}m node: {requests}"


def test_the_pod_request_formula_counts_native_sidecars_with_the_app() -> None:
    spec = {"initContainers": [{"resources": {"requests": {"cpu": "300m"}}},
                               {"restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}}],
            "containers": [{"resources": {"requests": {"cpu": "0.15"}}}]}
    assert pod_request_m(spec) == 300
    spec["initContainers"][0]["resources"]["requests"]["cpu"] = "200m"
    assert pod_request_m(spec) == 250
