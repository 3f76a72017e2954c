"""What the operator keeps of each object, the Ready condition it writes, and the paths it writes to."""

from __future__ import annotations

from typing import Any

from tracemesh_operator.compiler import compile_telemetry
from tracemesh_operator.conditions import HONOURED, Condition, status_patch
from tracemesh_operator.kube_api import object_path
from tracemesh_operator.records import object_key, slim_configmap, slim_pod, slim_resource
from tracemesh_operator.workload import proxy_config_for_pod

POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "reviews-v2-7f9c6d8b5-x2", "namespace": "bookinfo", "uid": "u1", "resourceVersion": "9",
                 "labels": {"app": "reviews", "version": "v2", "pod-template-hash": "7f9c6d8b5"},
                 "annotations": {"sidecar.istio.io/status": "{}", "big": "x" * 5000},
                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "reviews-v2-7f9c6d8b5",
                                      "uid": "rs", "controller": True, "blockOwnerDeletion": True}],
                 "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]},
    "spec": {"serviceAccountName": "bookinfo-reviews", "nodeName": "node-1",
             "containers": [{"name": "reviews", "image": "reviews:2", "env": [{"name": "A", "value": "b"}],
                             "ports": [{"containerPort": 9080, "protocol": "TCP", "name": "http"}]}]},
    "status": {"phase": "Running", "podIP": "10.244.1.7", "conditions": [{"type": "Ready", "status": "True"}]},
}


def test_a_slim_pod_compiles_to_the_same_proxy_config_as_the_whole_body() -> None:
    compiled = compile_telemetry({}, [], "bookinfo", {"app": "reviews"})
    slim = slim_pod(POD)
    assert proxy_config_for_pod(slim, compiled, {}, "d:15010", "1") == proxy_config_for_pod(
        POD, compiled, {}, "d:15010", "1")
    assert len(repr(slim)) < len(repr(POD)) / 5
    assert object_key(slim) == "bookinfo/reviews-v2-7f9c6d8b5-x2"


def test_a_slim_resource_keeps_spec_identity_and_every_condition() -> None:
    body = {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
            "metadata": {"name": "t", "namespace": "default", "generation": 3, "managedFields": [{}]},
            "spec": {"tracing": [{"randomSamplingPercentage": 5}]},
            "status": {"conditions": [{"type": "Other", "status": "True"},
                                      {"type": "Ready", "status": "False", "reason": "UnknownProvider"}]}}
    slim = slim_resource(body)
    assert slim == {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
                    "metadata": {"name": "t", "namespace": "default", "generation": 3},
                    "spec": {"tracing": [{"randomSamplingPercentage": 5}]},
                    "status": {"conditions": [{"type": "Other", "status": "True"},
                                              {"type": "Ready", "status": "False", "reason": "UnknownProvider"}]}}
    assert Condition.observed(slim) == Condition(False, "UnknownProvider", "")


def test_writing_ready_keeps_the_conditions_other_controllers_wrote() -> None:
    body = {"metadata": {}, "status": {"conditions": [
        {"type": "Reconciled", "status": "True", "reason": "ByArgo"},
        {"type": "Ready", "status": "False", "reason": "UnknownProvider", "lastTransitionTime": "T1"}]}}
    conditions = status_patch(slim_resource(body), (Condition(True, "Accepted", "ok"),), "T2")["conditions"]
    assert conditions == [{"type": "Reconciled", "status": "True", "reason": "ByArgo"},
                          {"type": "Ready", "status": "True", "reason": "Accepted", "message": "ok",
                           "lastTransitionTime": "T2"}]


def test_ready_condition_moves_its_transition_time_only_when_the_status_flips() -> None:
    body = {"metadata": {"generation": 4}, "status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "Accepted", "message": "ok", "lastTransitionTime": "T1"}]}}
    same = status_patch(body, (Condition(True, "Accepted", "still ok"),), "T2")["conditions"][0]
    assert (same["lastTransitionTime"], same["message"], same["observedGeneration"]) == ("T1", "still ok", 4)
    flipped = status_patch(body, (Condition(False, "UnknownProvider", "no such provider"),), "T2")["conditions"][0]
    assert flipped == {"type": "Ready", "status": "False", "reason": "UnknownProvider", "message": "no such provider",
                       "lastTransitionTime": "T2", "observedGeneration": 4}
    first = status_patch({"metadata": {}}, (Condition(True, "Accepted", "ok"),), "T3")["conditions"][0]
    assert first["lastTransitionTime"] == "T3" and "observedGeneration" not in first


def test_ready_and_honoured_are_written_together_and_each_keeps_its_own_transition_time() -> None:
    body = {"metadata": {}, "status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "Accepted", "lastTransitionTime": "T1"},
        {"type": "Other", "status": "True"}]}}
    ready = Condition(True, "Accepted", "in force")
    honoured = Condition(False, "UnsupportedField", "spec.metrics: not acted on", HONOURED)
    written = status_patch(body, (ready, honoured), "T2")["conditions"]
    assert [(c["type"], c["status"], c.get("lastTransitionTime")) for c in written] == [
        ("Other", "True", None), ("Ready", "True", "T1"), ("Honoured", "False", "T2")]
    assert Condition.observed({"status": {"conditions": written}}, HONOURED) == honoured


def test_a_configmap_record_keeps_only_the_mesh_key() -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
            "data": {"mesh": "enableTracing: true", "meshNetworks": "networks: {}"}}
    assert slim_configmap(body)["data"] == {"mesh": "enableTracing: true"}
    assert slim_configmap({"metadata": {"name": "istio"}})["data"] == {}


def test_object_paths() -> None:
    assert object_path("telemetry.istio.io/v1", "telemetries", "default", "t", "status") == (
        "/apis/telemetry.istio.io/v1/namespaces/default/telemetries/t/status")
    assert object_path("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", None, "w") == (
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/w")
    assert object_path("v1", "pods", "ns", "p") == "/api/v1/namespaces/ns/pods/p"
