"""The Pod Security Standards' `baseline` and `restricted` controls, as written in
https://kubernetes.io/docs/concepts/security/pod-security-standards/ (the policy the Pod Security
admission controller enforces with `pod-security.kubernetes.io/enforce=<level>` on a namespace).

`violations(pod, level)` lists (container or "pod", control, field, value) for every control the pod
fails; restricted includes baseline. Only the Linux controls (the Windows hostProcess one included).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["baseline", "restricted"]

# Baseline "Capabilities": adding any capability beyond this list is disallowed.
BASELINE_CAPABILITIES = frozenset({"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                                   "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes"})
RESTRICTED_VOLUMES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                                "projected", "secret"})


@dataclass(frozen=True, slots=True)
class Violation:
    where: str  # a container's name, or "pod"
    control: str  # the control's name in the standard
    field: str
    value: object


def violations(pod: Mapping[str, Any], level: Level) -> list[Violation]:
    found = list(_baseline(pod))
    if level == "restricted":
        found += _restricted(pod)
    return found


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for index, container in enumerate(spec.get(key) or ()):
            yield f"spec.{key}[{index}]", container


def _baseline(pod: Mapping[str, Any]) -> Iterator[Violation]:
    spec = pod["spec"]
    pod_context = spec.get("securityContext") or {}
    for name in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(name):
            yield Violation("pod", "Host Namespaces", f"spec.{name}", spec[name])
    for volume in spec.get("volumes") or ():
        if "hostPath" in volume:
            yield Violation("pod", "HostPath Volumes", f"spec.volumes[{volume['name']}].hostPath", volume["hostPath"])
    for sysctl in pod_context.get("sysctls") or ():
        if sysctl["name"] not in SAFE_SYSCTLS:
            yield Violation("pod", "Sysctls", "spec.securityContext.sysctls[*].name", sysctl["name"])
    yield from _seccomp_not_unconfined("pod", "spec.securityContext", pod_context)
    for path, container in _containers(spec):
        name = container["name"]
        context = container.get("securityContext") or {}
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            yield Violation(name, "HostProcess", f"{path}.securityContext.windowsOptions.hostProcess", True)
        if context.get("privileged"):
            yield Violation(name, "Privileged Containers", f"{path}.securityContext.privileged", True)
        added = set((context.get("capabilities") or {}).get("add") or ()) - BASELINE_CAPABILITIES
        if added:
            yield Violation(name, "Capabilities", f"{path}.securityContext.capabilities.add", sorted(added))
        for port in container.get("ports") or ():
            if port.get("hostPort"):
                yield Violation(name, "Host Ports", f"{path}.ports[*].hostPort", port["hostPort"])
        if context.get("procMount") not in (None, "Default"):
            yield Violation(name, "/proc Mount Type", f"{path}.securityContext.procMount", context["procMount"])
        yield from _seccomp_not_unconfined(name, f"{path}.securityContext", context)


def _seccomp_not_unconfined(where: str, path: str, context: Mapping[str, Any]) -> Iterator[Violation]:
    kind = (context.get("seccompProfile") or {}).get("type")
    if kind == "Unconfined":
        yield Violation(where, "Seccomp", f"{path}.seccompProfile.type", kind)


def _restricted(pod: Mapping[str, Any]) -> Iterator[Violation]:
    spec = pod["spec"]
    pod_context = spec.get("securityContext") or {}
    for volume in spec.get("volumes") or ():
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            yield Violation("pod", "Volume Types", f"spec.volumes[{volume['name']}]", sorted(kinds))
    if pod_context.get("runAsUser") == 0:
        yield Violation("pod", "Running as Non-root user", "spec.securityContext.runAsUser", 0)
    for path, container in _containers(spec):
        name = container["name"]
        context = container.get("securityContext") or {}
        if context.get("allowPrivilegeEscalation") is not False:
            yield Violation(name, "Privilege Escalation", f"{path}.securityContext.allowPrivilegeEscalation",
                            context.get("allowPrivilegeEscalation"))
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if non_root is not True:
            yield Violation(name, "Running as Non-root", f"{path}.securityContext.runAsNonRoot", non_root)
        if context.get("runAsUser") == 0:
            yield Violation(name, "Running as Non-root user", f"{path}.securityContext.runAsUser", 0)
        seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield Violation(name, "Seccomp", f"{path}.securityContext.seccompProfile.type", seccomp)
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or ()):
            yield Violation(name, "Capabilities (v1.22+)", f"{path}.securityContext.capabilities.drop",
                            capabilities.get("drop"))
        added = set(capabilities.get("add") or ()) - {"NET_BIND_SERVICE"}
        if added:
            yield Violation(name, "Capabilities (v1.22+)", f"{path}.securityContext.capabilities.add", sorted(added))
