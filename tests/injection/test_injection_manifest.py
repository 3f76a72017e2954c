"""manifests/webhook.yaml: valid Kubernetes, and the selectors and policies the mesh contract asks for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tracemesh_operator.injection import certs, webhook

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "webhook.yaml"


def documents() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc}


def test_manifest_is_valid_kubernetes() -> None:
    for document in documents().values():
        kubernetes_validate.validate(document, "1.30", strict=True)


def test_service_routes_443_to_the_webhook_port() -> None:
    service = documents()["Service"]
    assert (service["metadata"]["name"], service["metadata"]["namespace"]) == (
        certs.WEBHOOK_SERVICE, certs.WEBHOOK_NAMESPACE)
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (443, webhook.DEFAULT_PORT)


def test_two_webhooks_namespace_label_and_pod_opt_in() -> None:
    configuration = documents()["MutatingWebhookConfiguration"]
    assert configuration["metadata"]["name"] == certs.WEBHOOK_CONFIGURATION
    by_namespace, by_pod = configuration["webhooks"]
    assert by_namespace["namespaceSelector"] == {"matchLabels": {"istio-injection": "enabled"}}
    assert by_namespace["objectSelector"] == {"matchExpressions": [
        {"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]}]}
    assert by_pod["namespaceSelector"] == {"matchExpressions": [
        {"key": "istio-injection", "operator": "DoesNotExist"}]}
    assert by_pod["objectSelector"] == {"matchLabels": {"sidecar.istio.io/inject": "true"}}
    # One path per entry, each naming the namespace labels its selector implies (the webhook's decision).
    for entry, path in ((by_namespace, "/inject/namespace-enabled"), (by_pod, "/inject/pod-enabled")):
        assert entry["clientConfig"]["service"] == {"name": certs.WEBHOOK_SERVICE,
                                                    "namespace": certs.WEBHOOK_NAMESPACE,
                                                    "path": path, "port": 443}
        assert entry["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                   "resources": ["pods"], "scope": "Namespaced"}]
        assert (entry["failurePolicy"], entry["reinvocationPolicy"], entry["sideEffects"]) == (
            "Fail", "IfNeeded", "None")
        assert entry["timeoutSeconds"] == 5 and entry["admissionReviewVersions"] == ["v1"]
