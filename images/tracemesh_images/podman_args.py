"""A Kubernetes container (with its pod's spec) as `podman run` arguments: pure, no I/O.

The smoke runs each image under exactly the security context its manifest gives it, read from
manifests/operator.yaml and from the pod the injection webhook returns, never restated by hand:
- `runAsUser`/`runAsGroup` (the container's over the pod's) -> `--user uid:gid`;
- `runAsNonRoot: true` with uid 0 is refused, as the kubelet refuses it;
- `readOnlyRootFilesystem` -> `--read-only` (podman would otherwise mount a writable /tmp and /run:
  `--read-only-tmpfs=false` keeps them read-only, as in a pod);
- `capabilities.drop`/`add` -> `--cap-drop`/`--cap-add` (Kubernetes names, without CAP_);
- `allowPrivilegeEscalation: false` -> `--security-opt no-new-privileges`; `privileged` -> `--privileged`;
- `emptyDir` volume mounts -> `--tmpfs path` (`medium: Memory` is a tmpfs; `sizeLimit` its size);
- `env` values, and `fieldRef` values resolved from the pod (what the kubelet's downward API does);
- `command`/`args` as Kubernetes combines them with the image's ENTRYPOINT/CMD, with `$(VAR)`
  references to the container's env expanded (`$$` is a literal `$`), as the kubelet does.
Anything else in a security context is reported, so a field the smoke does not honour is never
silently passed as tested.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Fields handled above, or (seccompProfile RuntimeDefault) what podman applies by default anyway.
_HANDLED = frozenset({"runAsUser", "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem", "capabilities",
                      "allowPrivilegeEscalation", "privileged", "seccompProfile"})
# The pod-level fields a container inherits (the rest of the pod's securityContext is pod-wide).
_INHERITED = ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile")


class UnsupportedSpec(ValueError):
    """The container asks for something the smoke cannot reproduce with podman."""


@dataclass(frozen=True)
class PodmanRun:
    name: str
    flags: list[str]
    image: str
    argv: list[str]
    applied: list[str] = field(default_factory=list)  # the security settings it runs under, for the report

    def command(self, container_name: str, *extra_flags: str) -> list[str]:
        """`podman run` arguments for a container called `container_name`."""
        return ["run", "--name", container_name, *extra_flags, *self.flags, self.image, *self.argv]


def effective_security(pod_spec: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any]:
    pod_level = pod_spec.get("securityContext") or {}
    merged = {key: pod_level[key] for key in _INHERITED if key in pod_level}
    return merged | dict(container.get("securityContext") or {})


def podman_run(pod: Mapping[str, Any], container: Mapping[str, Any], name: str) -> PodmanRun:
    """Raises UnsupportedSpec naming the field when the container cannot be run as specified."""
    spec = pod.get("spec") or {}
    security = effective_security(spec, container)
    unknown = sorted(set(security) - _HANDLED)
    if unknown:
        raise UnsupportedSpec(f"{container.get('name')}: securityContext {', '.join(unknown)} is not reproduced "
                              "by the smoke; extend images/tracemesh_images/podman_args.py")
    seccomp = (security.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp != "RuntimeDefault":
        raise UnsupportedSpec(f"{container.get('name')}: seccompProfile {seccomp} is not reproduced "
                              "(podman applies its default profile, Kubernetes' RuntimeDefault)")
    flags: list[str] = []
    applied: list[str] = []
    if "runAsUser" in security:
        uid, gid = security["runAsUser"], security.get("runAsGroup", security["runAsUser"])
        if security.get("runAsNonRoot") is True and uid == 0:
            raise UnsupportedSpec(f"{container.get('name')}: runAsNonRoot with runAsUser 0 (the kubelet refuses it)")
        flags += ["--user", f"{uid}:{gid}"]
        applied.append(f"uid {uid}")
    if security.get("runAsNonRoot") is True:
        applied.append("runAsNonRoot")
    if security.get("readOnlyRootFilesystem") is True:
        flags += ["--read-only", "--read-only-tmpfs=false"]
        applied.append("read-only root")
    capabilities = security.get("capabilities") or {}
    for capability in capabilities.get("drop") or []:
        flags += ["--cap-drop", str(capability)]
    for capability in capabilities.get("add") or []:
        flags += ["--cap-add", str(capability)]
    if capabilities:
        applied.append("capabilities: drop " + ",".join(capabilities.get("drop") or ["-"])
                      + " add " + ",".join(capabilities.get("add") or ["-"]))
    if security.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
        applied.append("no privilege escalation")
    if security.get("privileged") is True:
        flags.append("--privileged")
    flags += _tmpfs_mounts(spec, container)
    env = {str(variable["name"]): _env_value(pod, variable) for variable in container.get("env") or []}
    for key, value in env.items():
        flags += ["--env", f"{key}={value}"]
    command = [_expand(str(word), env) for word in container.get("command") or []]
    args = [_expand(str(word), env) for word in container.get("args") or []]
    argv: list[str] = []
    if command:
        flags += ["--entrypoint", json.dumps(command[:1])]
        argv = [*command[1:], *(args or [])]
    elif args:
        argv = list(args)
    return PodmanRun(name=name, flags=flags, image=str(container["image"]), argv=argv, applied=applied)


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def _expand(word: str, env: Mapping[str, str]) -> str:
    """Kubernetes' expansion: `$(NAME)` of a defined variable is its value, undefined ones stay as written."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return "$" if name is None else env.get(name, match.group(0))
    return _REFERENCE.sub(replace, word)


def _tmpfs_mounts(spec: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
    volumes = {volume["name"]: volume for volume in spec.get("volumes") or []}
    flags = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None or "emptyDir" not in volume:
            raise UnsupportedSpec(f"{container.get('name')}: volume {mount['name']!r} is not an emptyDir; "
                                  "only emptyDir volumes are reproduced")
        size = (volume["emptyDir"] or {}).get("sizeLimit")
        # Kubernetes' 16Mi is tmpfs's 16m; world-writable like an emptyDir the kubelet creates.
        options = ",".join(["rw", "mode=1777", *([f"size={size.removesuffix('i').lower()}"] if size else [])])
        flags += ["--tmpfs", f"{mount['mountPath']}:{options}"]
    return flags


def _env_value(pod: Mapping[str, Any], variable: Mapping[str, Any]) -> str:
    if "value" in variable:
        return str(variable["value"])
    field_path = ((variable.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
    if not isinstance(field_path, str):
        raise UnsupportedSpec(f"env {variable.get('name')}: only values and fieldRef are reproduced")
    value: Any = pod
    for part in field_path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        raise UnsupportedSpec(f"env {variable.get('name')}: the pod has no {field_path}")
    return str(value)
