"""The pure injection core: every rule of the mesh contract, and a patch that applies cleanly (RFC 6902)."""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest

from tracemesh_operator.injection.mutation import (
    INIT_CONTAINER,
    PROXY_CONTAINER,
    STATUS_ANNOTATION,
    InjectionSettings,
    Mutation,
    Skip,
    inject,
)
from tracemesh_operator.injection.patch import apply_patch, pointer
from tracemesh_sidecar import iptables_cli
from tracemesh_sidecar.config import ConfigError
from tracemesh_sidecar.discovery import bootstrap_config
from tracemesh_sidecar.proxy.termination import DrainPlan, drain_plan

ENABLED = {"istio-injection": "enabled"}
SETTINGS = InjectionSettings()


def admitted_pod(**overrides: Any) -> dict[str, Any]:
    """A Deployment's pod as the API server admits it: generateName, owned by a ReplicaSet."""
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "reviews-v2-7d5b8c9f4-",
            "namespace": "default",
            "labels": {"app": "reviews", "version": "v2", "pod-template-hash": "7d5b8c9f4"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "reviews-v2-7d5b8c9f4",
                                 "uid": "u-1", "controller": True}],
        },
        "spec": {
            "serviceAccountName": "bookinfo-reviews",
            "containers": [{"name": "reviews", "image": "bookinfo/reviews:1",
                            "ports": [{"containerPort": 9080}, {"containerPort": 9443, "protocol": "TCP"},
                                      {"containerPort": 5353, "protocol": "UDP"}]}],
        },
    }
    pod.update(overrides)
    return pod


def injected(pod: dict[str, Any], namespace_labels: dict[str, str] = ENABLED,
             settings: InjectionSettings = SETTINGS) -> dict[str, Any]:
    outcome = inject(pod, namespace_labels, settings)
    assert isinstance(outcome, Mutation), outcome
    result: dict[str, Any] = jsonpatch.apply_patch(pod, outcome.patch)
    assert apply_patch(pod, outcome.patch) == result  # our applier (kube-inject) agrees with RFC 6902's
    return result


def container(containers: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(c for c in containers if c["name"] == name)


def with_labels(pod: dict[str, Any], **labels: str) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["metadata"]["labels"].update({key.replace("_", "/"): value for key, value in labels.items()})
    return pod


def with_annotations(pod: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["metadata"].setdefault("annotations", {}).update(annotations)
    return pod


# -- who gets injected --------------------------------------------------------------------------


def test_labelled_namespace_injects() -> None:
    assert isinstance(inject(admitted_pod(), ENABLED, SETTINGS), Mutation)


def test_unlabelled_namespace_skips_with_reason() -> None:
    outcome = inject(admitted_pod(), {}, SETTINGS)
    assert isinstance(outcome, Skip) and "istio-injection=enabled" in outcome.reason


def test_pod_opt_in_label_injects_in_unlabelled_namespace() -> None:
    pod = with_labels(admitted_pod(), **{"sidecar.istio.io_inject": "true"})
    assert isinstance(inject(pod, {}, SETTINGS), Mutation)


@pytest.mark.parametrize("namespace_labels", [ENABLED, {}])
def test_pod_opt_out_label_wins(namespace_labels: dict[str, str]) -> None:
    pod = with_labels(admitted_pod(), **{"sidecar.istio.io_inject": "false"})
    outcome = inject(pod, namespace_labels, SETTINGS)
    assert isinstance(outcome, Skip) and "opts out" in outcome.reason


def test_legacy_opt_out_annotation_is_honoured() -> None:
    pod = with_annotations(admitted_pod(), {"sidecar.istio.io/inject": "false"})
    assert isinstance(inject(pod, ENABLED, SETTINGS), Skip)


def test_disabled_namespace_wins_over_pod_opt_in() -> None:
    pod = with_labels(admitted_pod(), **{"sidecar.istio.io_inject": "true"})
    outcome = inject(pod, {"istio-injection": "disabled"}, SETTINGS)
    assert isinstance(outcome, Skip) and "disabled" in outcome.reason


def test_host_network_pod_is_skipped() -> None:
    pod = admitted_pod()
    pod["spec"]["hostNetwork"] = True
    outcome = inject(pod, ENABLED, SETTINGS)
    assert isinstance(outcome, Skip) and "hostNetwork" in outcome.reason


def test_injected_pod_is_never_injected_twice() -> None:
    once = injected(admitted_pod())
    outcome = inject(once, ENABLED, SETTINGS)
    assert isinstance(outcome, Skip) and STATUS_ANNOTATION in outcome.reason


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("name", [PROXY_CONTAINER, "tracemesh-proxy"])
def test_a_pod_with_a_proxy_container_but_no_status_annotation_is_not_injected(name: str, native: bool) -> None:
    """Pods injected before the containers took Istio's names (`tracemesh-proxy`) keep their one proxy."""
    pod = admitted_pod()
    pod["spec"]["initContainers" if native else "containers"] = [
        {"name": name, "image": "docker.io/tracemesh/proxy:0.1.0"}, *([] if native else pod["spec"]["containers"])]
    outcome = inject(pod, ENABLED, SETTINGS)
    assert isinstance(outcome, Skip) and repr(name) in outcome.reason


def test_injected_containers_carry_istios_names() -> None:
    """`kubectl logs deploy/x -c istio-proxy` (pkg/kube/inject/inject.go ProxyContainerName, InitContainerName)."""
    result = injected(admitted_pod(), settings=InjectionSettings(native_sidecar=False))
    assert [c["name"] for c in result["spec"]["initContainers"]] == ["istio-init"]
    assert [c["name"] for c in result["spec"]["containers"]] == ["reviews", "istio-proxy"]


# -- what the pod gets --------------------------------------------------------------------------


def test_native_sidecar_layout() -> None:
    pod = admitted_pod()
    pod["spec"]["initContainers"] = [{"name": "migrate", "image": "migrate:1"}]
    result = injected(pod)
    names = [c["name"] for c in result["spec"]["initContainers"]]
    assert names == [INIT_CONTAINER, PROXY_CONTAINER, "migrate"]  # the app's init containers run proxied
    proxy = container(result["spec"]["initContainers"], PROXY_CONTAINER)
    assert proxy["restartPolicy"] == "Always"
    assert proxy["startupProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021}
    assert [c["name"] for c in result["spec"]["containers"]] == ["reviews"]
    status = json.loads(result["metadata"]["annotations"][STATUS_ANNOTATION])
    assert status == {"initContainers": [INIT_CONTAINER, PROXY_CONTAINER], "containers": [],
                      "volumes": ["tracemesh-tmp"], "imagePullSecrets": None, "revision": "default"}


def test_regular_container_layout_without_hold_puts_the_proxy_last_as_istio_does() -> None:
    """pkg/kube/inject/webhook.go reorderPod: MoveLast unless holdApplicationUntilProxyStarts; istio-init last."""
    pod = admitted_pod()
    pod["spec"]["initContainers"] = [{"name": "migrate", "image": "migrate:1"}]
    result = injected(pod, settings=InjectionSettings(native_sidecar=False))
    assert [c["name"] for c in result["spec"]["initContainers"]] == ["migrate", INIT_CONTAINER]
    assert [c["name"] for c in result["spec"]["containers"]] == ["reviews", PROXY_CONTAINER]
    assert "lifecycle" not in result["spec"]["containers"][1] and "restartPolicy" not in result["spec"]["containers"][1]


@pytest.mark.parametrize("how", ["settings", "mesh", "annotation", "annotation-over-mesh"])
def test_hold_application_until_proxy_starts_puts_the_proxy_first_with_a_post_start_wait(how: str) -> None:
    pod = with_annotations(admitted_pod(), {"sidecar.istio.io/nativeSidecar": "false"})
    pod["spec"]["initContainers"] = [{"name": "migrate", "image": "migrate:1"}]
    settings = SETTINGS
    if how == "settings":  # Istio's values.global.proxy.holdApplicationUntilProxyStarts
        settings = InjectionSettings(hold_application_until_proxy_starts=True)
    elif how == "mesh":  # MeshConfig defaultConfig.holdApplicationUntilProxyStarts
        settings = InjectionSettings(mesh_default_config={"holdApplicationUntilProxyStarts": True})
    elif how == "annotation":
        pod = with_annotations(pod, {"proxy.istio.io/config": "holdApplicationUntilProxyStarts: true"})
    else:
        settings = InjectionSettings(mesh_default_config={"holdApplicationUntilProxyStarts": False})
        pod = with_annotations(pod, {"proxy.istio.io/config": '{"holdApplicationUntilProxyStarts": true}'})
    result = injected(pod, settings=settings)
    assert [c["name"] for c in result["spec"]["initContainers"]] == ["migrate", INIT_CONTAINER]
    assert [c["name"] for c in result["spec"]["containers"]] == [PROXY_CONTAINER, "reviews"]
    proxy = result["spec"]["containers"][0]
    assert "restartPolicy" not in proxy
    assert proxy["lifecycle"] == {"postStart": {"exec": {"command": [
        "python", "-m", "tracemesh_sidecar.discovery.wait_ready", "--timeout", "600"]}}}
    assert result["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "reviews"
    assert json.loads(result["metadata"]["annotations"][STATUS_ANNOTATION])["containers"] == [PROXY_CONTAINER]


def test_native_sidecars_ignore_hold_and_drain_from_a_pre_stop_hook() -> None:
    """Istio's template: $holdProxy needs (not $nativeSidecar); a native proxy gets preStop `request POST drain`."""
    pod = with_annotations(admitted_pod(), {"proxy.istio.io/config": "holdApplicationUntilProxyStarts: true"})
    result = injected(pod)
    proxy = container(result["spec"]["initContainers"], PROXY_CONTAINER)
    assert proxy["lifecycle"] == {"preStop": {"exec": {"command": ["python", "-m", "tracemesh_sidecar.drain_request"]}}}
    assert [c["name"] for c in result["spec"]["containers"]] == ["reviews"]


def test_the_pods_proxy_config_reaches_the_proxy_as_istios_template_passes_it() -> None:
    """PROXY_CONFIG: the MeshConfig's defaultConfig under the pod's annotation; proxyMetadata: one variable each,
    merged key by key (pkg/config/mesh/mesh.go MergeProxyConfig)."""
    settings = InjectionSettings(mesh_default_config={
        "terminationDrainDuration": "20s", "tracing": {"sampling": 5},
        "proxyMetadata": {"MINIMUM_DRAIN_DURATION": "3s", "EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "false"}})
    pod = with_annotations(admitted_pod(), {"proxy.istio.io/config": (
        "terminationDrainDuration: 7s\nproxyMetadata:\n  EXIT_ON_ZERO_ACTIVE_CONNECTIONS: 'true'\n")})
    proxy = container(injected(pod, settings=settings)["spec"]["initContainers"], PROXY_CONTAINER)
    env = {entry["name"]: entry.get("value") for entry in proxy["env"]}
    assert json.loads(env["PROXY_CONFIG"]) == {
        "terminationDrainDuration": "7s", "tracing": {"sampling": 5},
        "proxyMetadata": {"MINIMUM_DRAIN_DURATION": "3s", "EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "true"}}
    assert env["EXIT_ON_ZERO_ACTIVE_CONNECTIONS"] == "true" and env["MINIMUM_DRAIN_DURATION"] == "3s"
    # ... and the sidecar reads its drain plan from that environment.
    assert drain_plan(env) == DrainPlan(7.0, True, 3.0)
    plain = container(injected(admitted_pod())["spec"]["initContainers"], PROXY_CONTAINER)
    assert drain_plan({entry["name"]: entry.get("value") for entry in plain["env"]}) == DrainPlan()


@pytest.mark.parametrize(("annotation", "field"), [
    ("terminationDrainDuration: soon", "terminationDrainDuration"),
    ("holdApplicationUntilProxyStarts: 'yes'", "holdApplicationUntilProxyStarts"),
    ("proxyMetadata: {EXIT_ON_ZERO_ACTIVE_CONNECTIONS: true}", "proxyMetadata"),
    ("[1, 2]", ""),
])
def test_a_bad_proxy_config_annotation_refuses_the_pod_naming_the_field(annotation: str, field: str) -> None:
    pod = with_annotations(admitted_pod(), {"proxy.istio.io/config": annotation})
    with pytest.raises(ConfigError) as raised:
        inject(pod, ENABLED, SETTINGS)
    assert raised.value.field == "metadata.annotations['proxy.istio.io/config']" + (f".{field}" if field else "")


def test_bad_native_sidecar_annotation_names_the_annotation() -> None:
    pod = with_annotations(admitted_pod(), {"sidecar.istio.io/nativeSidecar": "yes"})
    with pytest.raises(ConfigError, match=r"sidecar.istio.io/nativeSidecar.*'yes'.*\"true\" or \"false\""):
        inject(pod, ENABLED, SETTINGS)


def test_proxy_container_is_locked_down_and_probed() -> None:
    proxy = container(injected(admitted_pod())["spec"]["initContainers"], PROXY_CONTAINER)
    assert proxy["image"] == "docker.io/tracemesh/proxy:0.1.0"
    assert proxy["command"] + proxy["args"] == [
        "tracemesh", "proxy", "--discovery", "tracemesh-discovery.istio-system.svc:15010", "--bootstrap-env"]
    assert proxy["securityContext"] == {
        "runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": True, "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}}
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021}
    assert {(p["name"], p["containerPort"]) for p in proxy["ports"]} == {
        ("http-envoy-prom", 15090), ("http-health", 15021)}
    assert proxy["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert proxy["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}


def test_init_container_has_only_the_network_capabilities() -> None:
    init = container(injected(admitted_pod())["spec"]["initContainers"], INIT_CONTAINER)
    assert init["securityContext"] == {
        "runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False, "privileged": False,
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False,
        "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}}
    assert init["command"] == ["tracemesh"]
    assert init["args"] == ["iptables", "--proxy-uid", "1337", "--inbound-ports", "9080,9443"]


def test_interception_annotations_become_iptables_arguments() -> None:
    pod = with_annotations(admitted_pod(), {
        "traffic.sidecar.istio.io/includeInboundPorts": "9080, 8080",
        "traffic.sidecar.istio.io/excludeInboundPorts": "8081",
        "traffic.sidecar.istio.io/excludeOutboundPorts": "5432,6379",
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.96.0.1/12,169.254.169.254/32",
    })
    result = injected(pod)
    init = container(result["spec"]["initContainers"], INIT_CONTAINER)
    assert init["args"] == ["iptables", "--proxy-uid", "1337", "--inbound-ports", "9080,8080",
                            "--exclude-inbound-ports", "8081",
                            "--exclude-outbound-ports", "5432,6379",
                            "--exclude-outbound-ip-ranges", "10.96.0.0/12,169.254.169.254/32"]
    proxy = container(result["spec"]["initContainers"], PROXY_CONTAINER)
    assert _env(proxy)["TRACEMESH_APP_PORTS"] == "9080,8080"
    # ...which the real `tracemesh iptables` reads back as the annotations meant.
    parser = argparse.ArgumentParser()
    iptables_cli.add_arguments(parser)
    spec = iptables_cli.spec_from_args(parser.parse_args(init["args"][1:]))
    assert (spec.proxy_uid, spec.inbound_ports, spec.exclude_inbound_ports) == (1337, (9080, 8080), (8081,))
    assert spec.exclude_outbound_ports == (5432, 6379)
    assert spec.exclude_outbound_ip_ranges == ("10.96.0.0/12", "169.254.169.254/32")


def test_include_all_inbound_ports() -> None:
    pod = with_annotations(admitted_pod(), {"traffic.sidecar.istio.io/includeInboundPorts": "*"})
    init = container(injected(pod)["spec"]["initContainers"], INIT_CONTAINER)
    assert init["args"][init["args"].index("--inbound-ports") + 1] == "*"


@pytest.mark.parametrize(("annotation", "value", "message"), [
    ("traffic.sidecar.istio.io/includeInboundPorts", "9080,http", "'http', which is not a port"),
    ("traffic.sidecar.istio.io/excludeOutboundPorts", "70000", "'70000', which is not a port"),
    ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "10.0.0.0/33", "'10.0.0.0/33', which is not an IP range"),
    ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "fd00::/8", "IPv6 range 'fd00::/8'"),
])
def test_malformed_interception_annotation_is_refused_naming_it(annotation: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        inject(with_annotations(admitted_pod(), {annotation: value}), ENABLED, SETTINGS)
    assert annotation in caught.value.field
    assert message in caught.value.problem
    assert caught.value.fix


def test_images_and_discovery_address_come_from_settings() -> None:
    settings = InjectionSettings(proxy_image="registry.local/proxy:9", init_image="registry.local/init:9",
                                 discovery_address="discovery.mesh:15010", revision="canary")
    result = injected(admitted_pod(), settings=settings)
    init, proxy = result["spec"]["initContainers"]
    assert (init["image"], proxy["image"]) == ("registry.local/init:9", "registry.local/proxy:9")
    assert "discovery.mesh:15010" in proxy["args"]
    assert json.loads(result["metadata"]["annotations"][STATUS_ANNOTATION])["revision"] == "canary"


def test_downward_api_and_identity_environment() -> None:
    result = injected(admitted_pod())
    env = _env(container(result["spec"]["initContainers"], PROXY_CONTAINER))
    assert env["POD_NAME"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
    assert env["INSTANCE_IP"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}
    assert env["SERVICE_ACCOUNT"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.serviceAccountName"}}
    assert env["TRACEMESH_CANONICAL_SERVICE"] == "reviews"
    assert env["TRACEMESH_CANONICAL_REVISION"] == "v2"
    assert json.loads(env["TRACEMESH_LABELS"])["app"] == "reviews"
    assert env["TRACEMESH_APP_PORTS"] == "9080,9443"  # TCP only


def test_canonical_labels_are_added_from_the_owner_when_the_pod_has_none() -> None:
    pod = admitted_pod()
    pod["metadata"]["labels"] = {"pod-template-hash": "7d5b8c9f4"}
    result = injected(pod)
    labels = result["metadata"]["labels"]
    assert labels["service.istio.io/canonical-name"] == "reviews-v2"  # the Deployment, hash stripped
    assert labels["service.istio.io/canonical-revision"] == "latest"
    existing = injected(with_labels(admitted_pod(), **{"service.istio.io_canonical-name": "ratings"}))
    assert existing["metadata"]["labels"]["service.istio.io/canonical-name"] == "ratings"


def test_patch_escapes_annotation_keys_and_creates_missing_maps() -> None:
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    outcome = inject(bare, ENABLED, SETTINGS)
    assert isinstance(outcome, Mutation)
    paths = [op["path"] for op in outcome.patch]
    assert "/metadata/annotations" in paths and "/spec/volumes" in paths and "/spec/initContainers" in paths
    annotated = with_annotations(bare, {"team": "a"})
    outcome = inject(annotated, ENABLED, SETTINGS)
    assert isinstance(outcome, Mutation)
    assert "/metadata/annotations/sidecar.istio.io~1status" in [op["path"] for op in outcome.patch]
    assert pointer("a~b", "c/d") == "/a~0b/c~1d"
    result = jsonpatch.apply_patch(annotated, outcome.patch)
    assert result["metadata"]["annotations"]["team"] == "a"


def test_injected_pod_is_a_valid_kubernetes_pod() -> None:
    for settings in (SETTINGS, InjectionSettings(native_sidecar=False)):
        pod = injected(admitted_pod(), settings=settings)
        pod["metadata"]["name"] = "reviews-v2-7d5b8c9f4-x2x2x"
        kubernetes_validate.validate(pod, "1.30", strict=True)


def test_bootstrap_from_the_injected_environment() -> None:
    """What injection writes is what the sidecar's bootstrap reads: resolve the env like the kubelet does."""
    pod = injected(admitted_pod())
    pod["metadata"]["name"] = "reviews-v2-7d5b8c9f4-x2x2x"
    pod["status"] = {"podIP": "10.244.0.7"}
    proxy = container(pod["spec"]["initContainers"], PROXY_CONTAINER)
    environ = {}
    for name, value in _env(proxy).items():
        if isinstance(value, dict):
            value = _field(pod, value["fieldRef"]["fieldPath"])
        environ[name] = value
    discovery = proxy["args"][proxy["args"].index("--discovery") + 1]
    config = bootstrap_config(environ, discovery)
    assert (config.node.pod_name, config.node.namespace, config.node.pod_ip) == (
        "reviews-v2-7d5b8c9f4-x2x2x", "default", "10.244.0.7")
    assert config.node.service_name == "reviews.default"
    assert config.node.canonical_revision == "v2"
    assert config.node.service_account == "bookinfo-reviews"
    assert [p.port for p in config.inbound.ports] == [9080, 9443]
    assert not config.tracing.client.enabled and not config.tracing.server.enabled
    assert config.discovery is not None and config.discovery.address == discovery


def _env(proxy: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in proxy["env"]}


def _field(pod: dict[str, Any], path: str) -> str:
    node: Any = pod
    for part in path.split("."):
        node = node[part]
    return str(node)
