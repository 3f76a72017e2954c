"""Pods from manifests: inject them with the real webhook mutation, then run what the patched
pod spec says — init containers to completion, the native-sidecar proxy until ready, then the
app containers — each as a process in the pod's network namespace under the container's UID.

Nothing here describes the sidecar a second time: commands, arguments, environment (the
downward API resolved from the pod object) and users all come from the injected pod spec;
an image's entrypoint comes from its Dockerfile in the repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netns_cluster import Cluster, PodNet
from netns_net import open_connection

from tracemesh_operator.injection.mutation import InjectionSettings, Mutation, inject
from tracemesh_operator.injection.patch import apply_patch

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# Where each image of ours is built from, with its build args (as `make images` passes them):
# its ENTRYPOINT/CMD/USER/ENV are what the container runs.
IMAGE_DOCKERFILES: dict[str, tuple[Path, dict[str, str]]] = {
    "tracemesh/proxy": (REPO / "images/proxy/Dockerfile", {}),
    "tracemesh/operator": (REPO / "images/operator/Dockerfile", {}),
    **{f"tracemesh/bookinfo-{name}": (REPO / "samples/bookinfo/Dockerfile", {"SERVICE": name})
       for name in ("productpage", "details", "reviews", "ratings")},
}
_BUILD_ARG = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_FIELD_REFS = {
    "metadata.name": lambda pod: pod["metadata"]["name"],
    "metadata.namespace": lambda pod: pod["metadata"]["namespace"],
    "status.podIP": lambda pod: pod["status"]["podIP"],
    "spec.serviceAccountName": lambda pod: pod["spec"].get("serviceAccountName", "default"),
}


@dataclass(frozen=True)
class Image:
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    user: tuple[int, int]
    env: tuple[tuple[str, str], ...] = ()


def read_image(repository: str) -> Image:
    """ENTRYPOINT, CMD, USER and ENV (`K=V` form) of the final stage of the image's Dockerfile (JSON forms)."""
    dockerfile, build_args = IMAGE_DOCKERFILES[repository]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user = (0, 0)
    env: list[tuple[str, str]] = []
    for raw in dockerfile.read_text().splitlines():
        keyword, _, rest = raw.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            entrypoint, cmd, user, env = (), (), (0, 0), []
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env.append((name, _BUILD_ARG.sub(lambda m: build_args.get(m.group(1) or m.group(2), ""), value)))
        elif keyword == "ENTRYPOINT":
            entrypoint = tuple(json.loads(rest))
        elif keyword == "CMD":
            cmd = tuple(json.loads(rest))
        elif keyword == "USER":
            uid, _, gid = rest.strip().partition(":")
            user = (int(uid), int(gid or uid))
    return Image(entrypoint, cmd, user, tuple(env))


def local_argv(argv: Sequence[str]) -> list[str]:
    """The image's programs, as this checkout provides them."""
    programs = {"tracemesh": str(VENV_BIN / "tracemesh"), "python": sys.executable, "python3": sys.executable}
    return [programs.get(argv[0], argv[0]), *argv[1:]]


def image_of(container: Mapping[str, Any]) -> Image:
    """One of our images, read from its Dockerfile; any other image runs only what the container says."""
    repository = str(container.get("image", "")).rsplit(":", 1)[0].removeprefix("docker.io/")  # the default registry
    return read_image(repository) if repository in IMAGE_DOCKERFILES else Image((), (), (0, 0))


def container_argv(container: Mapping[str, Any]) -> list[str]:
    image = image_of(container)
    command = list(container.get("command") or image.entrypoint)
    args = list(container.get("args") or ([] if container.get("command") else image.cmd))
    return local_argv(command + args)


def container_user(container: Mapping[str, Any], pod: Mapping[str, Any]) -> tuple[int, int]:
    image_uid, image_gid = image_of(container).user
    pod_context = pod["spec"].get("securityContext") or {}
    context = container.get("securityContext") or {}
    uid = int(context.get("runAsUser", pod_context.get("runAsUser", image_uid)))
    gid = int(context.get("runAsGroup", pod_context.get("runAsGroup", image_gid if uid == image_uid else uid)))
    if (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")) and uid == 0:
        raise AssertionError(f"container {container['name']}: runAsNonRoot, but it would run as root")
    return uid, gid


def container_env(container: Mapping[str, Any], pod: Mapping[str, Any]) -> dict[str, str]:
    # The image's own ENV, minus what would point the process into the image's file system.
    image_env = {name: value for name, value in image_of(container).env if name != "PYTHONPATH"}
    env = {**image_env, "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/tmp",
           "HOSTNAME": pod["metadata"]["name"], "PYTHONUNBUFFERED": "1"}
    for entry in container.get("env") or ():
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        else:
            env[entry["name"]] = str(_FIELD_REFS[entry["valueFrom"]["fieldRef"]["fieldPath"]](pod))
    return env


def injected(pod: Mapping[str, Any], namespace_labels: Mapping[str, str],
             settings: InjectionSettings | None = None) -> dict[str, Any]:
    """The pod as the API server stores it after the webhook's patch."""
    mutation = inject(pod, namespace_labels, settings or InjectionSettings())
    assert isinstance(mutation, Mutation), f"{pod['metadata']['name']} was not injected: {mutation}"
    patched: dict[str, Any] = apply_patch(pod, mutation.patch)
    return patched


def pod_from_template(template: Mapping[str, Any], name: str, namespace: str, owner: str | None = None,
                      ) -> dict[str, Any]:
    """A pod as a Deployment's ReplicaSet creates it from the template."""
    metadata = json.loads(json.dumps(template.get("metadata") or {}))
    metadata.update({"name": name, "namespace": namespace})
    if owner:
        metadata["labels"] = {**metadata.get("labels", {}), "pod-template-hash": "netns"}
        metadata["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{owner}-netns",
                                        "controller": True, "uid": f"uid-{owner}"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": json.loads(json.dumps(template["spec"]))}


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class RunningPod:
    net: PodNet
    body: dict[str, Any]  # the injected pod, with status.podIP
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.net.namespace}/{self.net.name}"


class Kubelet:
    """Starts and stops the pods' processes; stop_all() ends every one of them, whatever happened."""

    def __init__(self, cluster: Cluster, log_dir: Path) -> None:
        self.cluster = cluster
        self.log_dir = log_dir
        self.pods: list[RunningPod] = []

    def prepare(self, pod: Mapping[str, Any]) -> RunningPod:
        """The pod's network namespace and IP (what scheduling gives it); nothing runs yet."""
        metadata = pod["metadata"]
        net = self.cluster.add_pod(metadata["name"], metadata["namespace"], metadata.get("labels") or {})
        body = {**pod, "status": {"podIP": net.ip, "phase": "Pending"}}
        running = RunningPod(net=net, body=body)
        self.pods.append(running)
        return running

    async def start(self, pod: RunningPod, timeout_s: float = 30.0) -> None:
        """The pod's sysctls (set in its network namespace, as the kubelet sets namespaced ones), then init
        containers in order (a restartPolicy Always one is a native sidecar: started and awaited through its
        startup probe), then the containers, each awaited until ready."""
        for sysctl in (pod.body["spec"].get("securityContext") or {}).get("sysctls") or ():
            subprocess.run(["ip", "netns", "exec", pod.net.netns, "sysctl", "-q", "-w",
                            f"{sysctl['name']}={sysctl['value']}"], check=True)
        for container in pod.body["spec"].get("initContainers") or ():
            if container.get("restartPolicy") == "Always":
                self._spawn(pod, container)
                await self._wait_ready(pod, container, timeout_s)
            else:
                await self._run_to_completion(pod, container)
        for container in pod.body["spec"]["containers"]:
            self._spawn(pod, container)
        for container in pod.body["spec"]["containers"]:
            await self._wait_ready(pod, container, timeout_s)
        pod.body["status"]["phase"] = "Running"

    def _command(self, pod: RunningPod, container: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
        uid, gid = container_user(container, pod.body)
        user = [] if uid == 0 else ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
        argv = ["ip", "netns", "exec", pod.net.netns, *user, *container_argv(container)]
        return argv, container_env(container, pod.body)

    async def _run_to_completion(self, pod: RunningPod, container: Mapping[str, Any], timeout_s: float = 60.0,
                                 ) -> None:
        # Asynchronously: the discovery server shares this event loop and must keep answering.
        argv, env = self._command(pod, container)
        process = await asyncio.create_subprocess_exec(*argv, env=env, stdout=subprocess.PIPE,
                                                       stderr=subprocess.STDOUT)
        output = (await asyncio.wait_for(process.communicate(), timeout_s))[0].decode(errors="replace")
        (self.log_dir / f"{pod.net.name}.{container['name']}.log").write_text(output)
        if process.returncode != 0:
            raise AssertionError(f"{pod.key} init container {container['name']} exited {process.returncode}: {output}")

    def _spawn(self, pod: RunningPod, container: Mapping[str, Any]) -> Process:
        argv, env = self._command(pod, container)
        log = self.log_dir / f"{pod.net.name}.{container['name']}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        process = Process(container["name"], popen, log)
        pod.processes[container["name"]] = process
        return process

    async def _wait_ready(self, pod: RunningPod, container: Mapping[str, Any], timeout_s: float) -> None:
        """The container's startup/readiness probe, probed from the node like the kubelet does;
        without a probe, its declared ports accepting connections on the pod's loopback."""
        probe = container.get("startupProbe") or container.get("readinessProbe")
        deadline = time.monotonic() + timeout_s
        process = pod.processes[container["name"]]
        while True:
            if process.popen.poll() is not None:
                raise AssertionError(f"{pod.key} container {container['name']} exited {process.popen.returncode}:\n"
                                     f"{process.log.read_text()[-3000:]}")
            if await self._probe(pod, container, probe):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{pod.key} container {container['name']} not ready after {timeout_s}s:\n"
                                     f"{process.log.read_text()[-3000:]}")
            await asyncio.sleep(0.1)

    async def _probe(self, pod: RunningPod, container: Mapping[str, Any], probe: Mapping[str, Any] | None) -> bool:
        try:
            if probe and "httpGet" in probe:
                status = await http_status(self.cluster.node, pod.net.ip, int(probe["httpGet"]["port"]),
                                           probe["httpGet"].get("path", "/"))
                return 200 <= status < 400
            for port in container.get("ports") or ():
                _, writer = await open_connection(pod.net.netns, "127.0.0.1", int(port["containerPort"]), 1.0)
                writer.close()
            return True
        except (TimeoutError, OSError, ValueError):
            return False

    def stop(self, pod: RunningPod, container_name: str) -> None:
        process = pod.processes.pop(container_name)
        _terminate(process.popen)

    def terminate(self, pod: RunningPod, container_name: str) -> subprocess.Popen[bytes]:
        """SIGTERM to one container, as the kubelet sends it; the caller waits for the exit (and its code)."""
        process = pod.processes.pop(container_name)
        os.killpg(process.popen.pid, signal.SIGTERM)
        return process.popen

    def restart(self, pod: RunningPod, container_name: str) -> Process:
        return self._spawn(pod, self._container(pod, container_name))

    async def wait_ready(self, pod: RunningPod, container_name: str, timeout_s: float = 30.0) -> None:
        await self._wait_ready(pod, self._container(pod, container_name), timeout_s)

    def _container(self, pod: RunningPod, name: str) -> dict[str, Any]:
        spec = pod.body["spec"]
        container: dict[str, Any] = next(c for c in [*(spec.get("initContainers") or ()), *spec["containers"]]
                                         if c["name"] == name)
        return container

    def stop_all(self) -> None:
        """Every pod deleted at once, each as the kubelet ends a pod: the native sidecars' preStop hooks run
        while the other containers get SIGTERM; once those have exited the sidecars get theirs (and, drained
        already, stop at once); SIGKILL for whatever outlives the grace period."""
        sidecars: list[subprocess.Popen[bytes]] = []
        others: list[subprocess.Popen[bytes]] = []
        for pod in self.pods:
            native = {container["name"]: container for container in pod.body["spec"].get("initContainers") or ()
                      if container.get("restartPolicy") == "Always"}
            for name, process in pod.processes.items():
                if name in native and process.popen.poll() is None:
                    self._pre_stop(pod, native[name])
                    sidecars.append(process.popen)
                else:
                    others.append(process.popen)
            pod.processes.clear()
        _terminate_all(others)
        _terminate_all(sidecars)

    def pre_stop(self, pod: RunningPod, container_name: str) -> subprocess.CompletedProcess[bytes] | None:
        """The container's preStop exec hook, run as the kubelet runs it (None when it has none)."""
        return self._pre_stop(pod, self._container(pod, container_name))

    def _pre_stop(self, pod: RunningPod, container: Mapping[str, Any]) -> subprocess.CompletedProcess[bytes] | None:
        command = (((container.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command")
        if not command:
            return None
        argv, env = self._command(pod, {**container, "command": command, "args": []})
        return subprocess.run(argv, env=env, capture_output=True, timeout=10, check=False)


def _terminate_all(popens: Sequence[subprocess.Popen[bytes]], grace_s: float = 30.0) -> None:
    """SIGTERM to all, then SIGKILL to those still running after the grace period (the pod default, 30s)."""
    for popen in popens:
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for popen in popens:
        try:
            popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(timeout=5)


def _terminate(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGTERM)
    try:
        popen.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(timeout=5)


async def http_status(netns: str, host: str, port: int, path: str, timeout_s: float = 2.0) -> int:
    status, _, _ = await http_get(netns, host, port, path, timeout_s=timeout_s)
    return status


async def http_get(netns: str, host: str, port: int, path: str, headers: Mapping[str, str] | None = None,
                   timeout_s: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 GET from inside `netns` (like `kubectl exec ... curl`), connection closed after."""
    reader, writer = await open_connection(netns, host, port, timeout_s)
    try:
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
                 *(f"{name}: {value}" for name, value in (headers or {}).items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = await asyncio.wait_for(reader.read(-1), timeout_s)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    response_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    if response_headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return int(status_line.split()[1]), response_headers, body


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return bytes(out)


def exec_in_pod(pod: PodNet, argv: Sequence[str], uid: int = 0, timeout_s: float = 30.0,
                ) -> subprocess.CompletedProcess[str]:
    """`kubectl exec`: run argv in the pod's network namespace (and hosts file) as `uid`."""
    user = [] if uid == 0 else ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    return subprocess.run(["ip", "netns", "exec", pod.netns, *user, *local_argv(argv)], capture_output=True,
                          text=True, timeout=timeout_s, check=False,
                          env={"PATH": f"{VENV_BIN}:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/tmp"})
