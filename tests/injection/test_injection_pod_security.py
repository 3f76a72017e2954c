"""The injected pod against the Pod Security Standards (docs/pod-security.md): which fields fail, for which
level. The capture rules need NET_ADMIN and NET_RAW in istio-init, which `baseline` already forbids, so a
namespace enforcing `baseline` or `restricted` refuses injected pods, as it refuses Istio's without Istio CNI."""

from __future__ import annotations

from typing import Any

import pytest
from pod_security_standards import Violation, violations
from test_injection_mutation import ENABLED, admitted_pod, injected, with_annotations

from tracemesh_operator.injection.mutation import InjectionSettings


def restricted_app() -> dict[str, Any]:
    """An app pod that meets `restricted` by itself."""
    pod = admitted_pod()
    for app in pod["spec"]["containers"]:
        app["securityContext"] = {"runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False,
                                  "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    return pod


def test_the_app_alone_meets_restricted() -> None:
    assert violations(restricted_app(), "restricted") == []


@pytest.mark.parametrize("native", [True, False])
def test_injected_pod_fails_baseline_on_the_init_containers_capabilities_only(native: bool) -> None:
    pod = restricted_app()
    if not native:
        pod = with_annotations(pod, {"sidecar.istio.io/nativeSidecar": "false"})
    result = injected(pod, ENABLED, InjectionSettings())
    index = [c["name"] for c in result["spec"]["initContainers"]].index("istio-init")
    assert violations(result, "baseline") == [
        Violation("istio-init", "Capabilities", f"spec.initContainers[{index}].securityContext.capabilities.add",
                  ["NET_ADMIN", "NET_RAW"])]


def test_injected_pod_fails_restricted_on_the_init_container_as_root_with_network_capabilities() -> None:
    result = injected(restricted_app(), ENABLED, InjectionSettings())
    context = "spec.initContainers[0].securityContext"
    assert violations(result, "restricted") == [
        Violation("istio-init", "Capabilities", f"{context}.capabilities.add", ["NET_ADMIN", "NET_RAW"]),
        Violation("istio-init", "Running as Non-root", f"{context}.runAsNonRoot", False),
        Violation("istio-init", "Running as Non-root user", f"{context}.runAsUser", 0),
        Violation("istio-init", "Capabilities (v1.22+)", f"{context}.capabilities.add", ["NET_ADMIN", "NET_RAW"]),
    ]  # the proxy (istio-proxy) meets restricted: uid 1337, no escalation, ALL dropped, RuntimeDefault seccomp


def test_without_the_init_container_the_pod_would_meet_restricted() -> None:
    """What Istio-CNI-like capture would buy (the design in docs/pod-security.md): the rules installed from the
    node, the pod keeps only the proxy, which meets restricted."""
    result = injected(restricted_app(), ENABLED, InjectionSettings())
    result["spec"]["initContainers"] = [c for c in result["spec"]["initContainers"] if c["name"] != "istio-init"]
    assert violations(result, "restricted") == []
