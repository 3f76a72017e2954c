"""The smoke runs each image under its manifest's security context: the translation to `podman run` flags,
checked against the real documents (manifests/operator.yaml, the injection template)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from tracemesh_images.podman_args import UnsupportedSpec, podman_run
from tracemesh_images.smoke import IMAGES

from tracemesh_operator.injection.mutation import InjectionSettings, Mutation, inject
from tracemesh_sidecar.discovery.bootstrap import ENV_POD_IP, ENV_POD_NAME

REPO = Path(__file__).resolve().parents[2]


def deployment(path: str, name: str) -> dict[str, Any]:
    (found,) = [doc for doc in yaml.safe_load_all((REPO / path).read_text())
                if doc and doc["kind"] == "Deployment" and doc["metadata"]["name"] == name]
    return dict(found)


def pod_of(path: str, name: str, pod_ip: str) -> dict[str, Any]:
    template = deployment(path, name)["spec"]["template"]
    return {"metadata": {**template["metadata"], "name": f"{name}-x", "namespace": "default"},
            "spec": template["spec"], "status": {"podIP": pod_ip}}


def flag_values(flags: list[str], flag: str) -> list[str]:
    return [flags[index + 1] for index, word in enumerate(flags) if word == flag]


def injected_details() -> dict[str, Any]:
    pod = pod_of("samples/bookinfo/platform/kube/bookinfo.yaml", "details-v1", "10.1.2.3")
    mutation = inject(pod, {"istio-injection": "enabled"}, InjectionSettings())
    assert isinstance(mutation, Mutation), mutation
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(pod), mutation.patch)
    return result


def test_the_operator_runs_as_its_deployment_says() -> None:
    pod = pod_of("manifests/operator.yaml", "tracemesh-operator", "10.0.0.2")
    run = podman_run(pod, pod["spec"]["containers"][0], "operator")
    assert flag_values(run.flags, "--user") == ["10001:10001"]  # the pod's runAsUser over the image's USER
    assert "--read-only" in run.flags and "--read-only-tmpfs=false" in run.flags
    assert flag_values(run.flags, "--cap-drop") == ["ALL"] and not flag_values(run.flags, "--cap-add")
    assert flag_values(run.flags, "--security-opt") == ["no-new-privileges"]
    assert flag_values(run.flags, "--tmpfs") == ["/tmp:rw,mode=1777,size=16m"]  # emptyDir Memory, sizeLimit 16Mi
    # command + args as the kubelet runs them, $(TRACEMESH_PROXY_IMAGE) expanded from the container's env.
    assert flag_values(run.flags, "--entrypoint") == ['["tracemesh"]']
    assert run.argv[0] == "operator" and "--proxy-image=docker.io/tracemesh/proxy:0.1.0" in run.argv


def test_the_injected_sidecar_and_init_container() -> None:
    pod = injected_details()
    init, proxy = pod["spec"]["initContainers"]
    sidecar = podman_run(pod, proxy, "istio-proxy")
    assert flag_values(sidecar.flags, "--user") == ["1337:1337"] and "--read-only" in sidecar.flags
    env = dict(value.split("=", 1) for value in flag_values(sidecar.flags, "--env"))
    assert env[ENV_POD_IP] == "10.1.2.3" and env[ENV_POD_NAME] == "details-v1-x"  # fieldRefs resolved
    capture = podman_run(pod, init, "istio-init")
    assert flag_values(capture.flags, "--user") == ["0:0"] and "--read-only" not in capture.flags
    assert flag_values(capture.flags, "--cap-drop") == ["ALL"]
    assert flag_values(capture.flags, "--cap-add") == ["NET_ADMIN", "NET_RAW"]
    assert "--privileged" not in capture.flags


def test_run_as_non_root_is_kept_for_the_running_check() -> None:
    pod = injected_details()
    app = podman_run(pod, pod["spec"]["containers"][0], "details")
    assert "runAsNonRoot" in app.applied and not flag_values(app.flags, "--user")  # the image's USER applies


@pytest.mark.parametrize(("change", "named"), [
    ({"securityContext": {"procMount": "Unmasked"}}, "procMount"),
    ({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}, "seccompProfile Unconfined"),
    ({"securityContext": {"runAsNonRoot": True, "runAsUser": 0}}, "runAsNonRoot with runAsUser 0"),
    ({"volumeMounts": [{"name": "config", "mountPath": "/etc/x"}]}, "'config' is not an emptyDir"),
    ({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}, "env X"),
])
def test_what_podman_cannot_reproduce_is_refused_naming_it(change: dict[str, Any], named: str) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"volumes": [{"name": "config", "configMap": {"name": "c"}}]}}
    with pytest.raises(UnsupportedSpec, match=re.escape(named)):
        podman_run(pod, {"name": "app", "image": "i", **change}, "app")


def test_variable_references_expand_as_the_kubelet_expands_them() -> None:
    container = {"name": "c", "image": "i", "env": [{"name": "A", "value": "x"}],
                 "args": ["$(A)", "$$(A)", "$(UNDEFINED)", "a-$(A)-b"]}
    assert podman_run({"spec": {}}, container, "c").argv == ["x", "$(A)", "$(UNDEFINED)", "a-x-b"]


def test_the_smoke_builds_every_image_make_images_builds() -> None:
    makefile = (REPO / "Makefile").read_text()
    built = set(re.findall(r"-t \$\(IMAGE_REPO\)/([a-z-]+):\$\(VERSION\)", makefile))
    bookinfo = re.search(r"^BOOKINFO\s*:=\s*(.+)$", makefile, re.MULTILINE)
    assert bookinfo is not None
    expected = built | {f"bookinfo-{s}" for s in bookinfo.group(1).split()}  # -t $(IMAGE_REPO)/bookinfo-$(s)
    assert {image.name for image in IMAGES} == expected
