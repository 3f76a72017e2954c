"""The webhook over real HTTPS, with AdmissionReview v1 bodies shaped exactly as the API server sends them."""

from __future__ import annotations

import base64
import copy
import json
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import pytest

from tracemesh_operator.injection import certs, webhook
from tracemesh_operator.injection.mutation import STATUS_ANNOTATION, InjectionSettings
from tracemesh_sidecar.config import ConfigError

NAMESPACES = {"bookinfo": {"istio-injection": "enabled", "kubernetes.io/metadata.name": "bookinfo"},
              "plain": {"kubernetes.io/metadata.name": "plain"}}


def namespace_labels(name: str) -> dict[str, str]:
    """Like the operator's namespace index, which refuses to guess about a namespace it has not read yet."""
    if name not in NAMESPACES:
        raise ConfigError("request.namespace", f"namespace {name!r} is not known to the operator yet",
                          "retry in a few seconds")
    return NAMESPACES[name]


def pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"generateName": f"{name}-6b746f74dc-", "creationTimestamp": None,
                     "labels": {"app": name, "version": "v1", "pod-template-hash": "6b746f74dc", **(labels or {})},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": f"{name}-6b746f74dc", "uid": str(uuid.uuid4()),
                                          "controller": True, "blockOwnerDeletion": True}],
                     "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                                        "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {}}]},
        "spec": {"volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": []}}],
                 "containers": [{"name": name, "image": f"bookinfo/{name}:1",
                                 "ports": [{"containerPort": 9080, "protocol": "TCP"}],
                                 "resources": {}, "terminationMessagePath": "/dev/termination-log",
                                 "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
                 "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                 "serviceAccountName": "default", "serviceAccount": "default", "securityContext": {},
                 "schedulerName": "default-scheduler", "enableServiceLinks": True,
                 "preemptionPolicy": "PreemptLowerPriority", "priority": 0},
        "status": {},
    }


def review(namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    """An AdmissionReview v1 request as kube-apiserver 1.30 sends it for a ReplicaSet creating a pod."""
    return {
        "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "uid": str(uuid.uuid4()),
                         "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                                    "system:authenticated"]},
            "object": obj, "oldObject": None, "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    certificate = certs.load_or_create(None, tmp_path)
    app = webhook.create_app(namespace_labels, InjectionSettings())
    runner = await webhook.start_server(app, certs.server_ssl_context(certificate), host="127.0.0.1", port=0)
    port = runner.addresses[0][1]
    trust = ssl.create_default_context(cadata=certificate.ca_pem.decode())  # verifies name and chain
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as session:
        yield session, f"https://localhost:{port}/inject"
    await runner.cleanup()


async def post(client: tuple[aiohttp.ClientSession, str], body: Any) -> tuple[int, Any]:
    session, url = client
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


def patched(request_review: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    response = answer["response"]
    assert response["uid"] == request_review["request"]["uid"]
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    result: dict[str, Any] = jsonpatch.apply_patch(request_review["request"]["object"], patch)
    return result


async def test_injects_a_pod_in_a_labelled_namespace(client: tuple[aiohttp.ClientSession, str]) -> None:
    request_review = review("bookinfo", pod("productpage"))
    status, answer = await post(client, request_review)
    assert status == 200
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    result = patched(request_review, answer)
    assert STATUS_ANNOTATION in result["metadata"]["annotations"]
    assert [c["name"] for c in result["spec"]["initContainers"]] == ["istio-init", "istio-proxy"]
    assert [v["name"] for v in result["spec"]["volumes"]] == ["kube-api-access-abcde", "tracemesh-tmp"]


async def test_opt_out_label_is_allowed_without_a_patch(client: tuple[aiohttp.ClientSession, str]) -> None:
    request_review = review("bookinfo", pod("details", {"sidecar.istio.io/inject": "false"}))
    status, answer = await post(client, request_review)
    assert status == 200
    assert answer["response"] == {"uid": request_review["request"]["uid"], "allowed": True}


async def test_opted_in_pod_in_an_unlabelled_namespace(client: tuple[aiohttp.ClientSession, str]) -> None:
    plain = review("plain", pod("ratings"))
    _, answer = await post(client, plain)
    assert "patch" not in answer["response"]
    opted_in = review("plain", pod("ratings", {"sidecar.istio.io/inject": "true"}))
    _, answer = await post(client, opted_in)
    assert "istio-proxy" in [c["name"] for c in patched(opted_in, answer)["spec"]["initContainers"]]


async def test_never_injects_twice(client: tuple[aiohttp.ClientSession, str]) -> None:
    """reinvocationPolicy IfNeeded: the API server calls again with the pod as already patched."""
    first = review("bookinfo", pod("reviews"))
    _, answer = await post(client, first)
    again = review("bookinfo", patched(first, answer))
    status, answer = await post(client, again)
    assert status == 200
    assert answer["response"] == {"uid": again["request"]["uid"], "allowed": True}


@pytest.mark.parametrize("body", [b"", b"{not json", b"[]", json.dumps({"kind": "AdmissionReview"}).encode(),
                                  json.dumps({"request": {"uid": 7}}).encode()])
async def test_review_without_a_readable_uid_gets_400_with_the_reason(
        client: tuple[aiohttp.ClientSession, str], body: bytes) -> None:
    status, answer = await post(client, body)
    assert status == 400
    assert isinstance(answer, str) and "malformed AdmissionReview" in answer
    assert "JSON" in answer or "request.uid" in answer
    # still serving
    request_review = review("bookinfo", pod("details"))
    assert (await post(client, request_review))[0] == 200


async def test_review_with_a_uid_but_no_pod_is_denied_with_the_reason(
        client: tuple[aiohttp.ClientSession, str]) -> None:
    request_review = review("bookinfo", pod("details"))
    request_review["request"]["object"] = "garbage"
    status, answer = await post(client, request_review)
    assert status == 200
    assert answer["response"]["allowed"] is False
    assert "request.object" in answer["response"]["status"]["message"]


async def test_wrong_review_version_is_denied_naming_the_setting(client: tuple[aiohttp.ClientSession, str]) -> None:
    request_review = review("bookinfo", pod("details"))
    request_review["apiVersion"] = "admission.k8s.io/v1beta1"
    _, answer = await post(client, request_review)
    assert answer["response"]["allowed"] is False
    assert "admissionReviewVersions: [v1]" in answer["response"]["status"]["message"]


async def test_bad_annotation_denies_the_pod_naming_the_annotation(client: tuple[aiohttp.ClientSession, str]) -> None:
    bad = pod("details")
    bad["metadata"]["annotations"] = {"traffic.sidecar.istio.io/excludeOutboundPorts": "db"}
    _, answer = await post(client, review("bookinfo", bad))
    assert answer["response"]["allowed"] is False
    assert "traffic.sidecar.istio.io/excludeOutboundPorts" in answer["response"]["status"]["message"]


async def test_non_pod_objects_are_allowed_with_a_warning(client: tuple[aiohttp.ClientSession, str]) -> None:
    request_review = review("bookinfo", {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x"}})
    request_review["request"]["kind"] = {"group": "", "version": "v1", "kind": "ConfigMap"}
    _, answer = await post(client, request_review)
    assert answer["response"]["allowed"] is True
    assert "Pod CREATE" in answer["response"]["warnings"][0]


async def test_plain_http_is_refused(client: tuple[aiohttp.ClientSession, str]) -> None:
    _, url = client
    with pytest.raises(aiohttp.ClientError):
        async with aiohttp.ClientSession() as plain, plain.post(url.replace("https", "http"), data=b"{}"):
            pass


async def test_unknown_namespace_is_denied_with_the_reason(client: tuple[aiohttp.ClientSession, str]) -> None:
    _, answer = await post(client, review("brand-new", pod("details")))
    assert answer["response"]["allowed"] is False
    assert "'brand-new' is not known" in answer["response"]["status"]["message"]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    children: list[tuple[Any, Any]] = []
    if isinstance(node, dict):
        children = list(node.items())
    elif isinstance(node, list):
        children = list(enumerate(node))
    paths = []
    for key, child in children:
        paths.append((*prefix, key))
        paths += _paths(child, (*prefix, key))
    return paths


def test_no_corruption_of_a_review_makes_the_core_fail_unexpectedly() -> None:
    """Every field, replaced by every wrong type: an answer or MalformedReview, never another exception."""
    original = review("bookinfo", pod("reviews"))
    original["request"]["object"]["metadata"]["annotations"] = {"sidecar.istio.io/nativeSidecar": "true"}
    paths = _paths(original)
    assert len(paths) > 60
    for path in paths:
        for wrong in (None, 7, "x", [], {}, True):
            corrupted = copy.deepcopy(original)
            parent = corrupted
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = wrong
            try:
                answer = webhook.review_response(corrupted, lambda name: NAMESPACES["bookinfo"], InjectionSettings())
            except webhook.MalformedReview:
                continue
            assert answer["response"]["uid"] == corrupted["request"]["uid"], path
