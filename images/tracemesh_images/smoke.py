"""`make images-smoke`: every image built with buildah, then run with podman as a cluster would run it.

Root only (buildah, podman, network namespaces). The steps, each printed with what it proved:
1. the Dockerfiles' base, a debootstrapped STAND-IN for python:3.11.11-slim-bookworm
   (images/base/stand-in-python-slim.sh, cached), then every Dockerfile built unchanged by buildah
   under the full names the manifests ask for (docker.io/tracemesh/...:VERSION);
2. a two-namespace network, no CNI and nothing on the host but one veth:
       host 10.214.0.1 --- ctl netns 10.214.0.2 | 10.214.0.5 --- pod netns 10.214.0.6
   kmock's Kubernetes emulator (tracemesh_operator.kmock_cluster) listens on the host end;
3. the operator container in `ctl`, under manifests/operator.yaml's security context, logged in to
   kmock through a kubeconfig (where a cluster gives it a service account token): it must become
   ready and write its CA into the MutatingWebhookConfiguration (from manifests/webhook.yaml);
4. Bookinfo's details pod (samples/bookinfo/platform/kube/bookinfo.yaml) sent to the operator
   container's webhook, over TLS verified with that caBundle, on the namespace entry's path; the
   patched pod is what runs next, so the sidecar's and init container's settings are the template's;
5. in `pod`: istio-init installs its rules (root, NET_ADMIN/NET_RAW only), istio-proxy runs as uid
   1337 on a read-only root and syncs its config from the operator container (discovery 15010),
   and the details container answers a request from `ctl` through the inbound capture.
Containers, namespaces and the veth are removed at the end, and leftovers of a killed run at the start.
podman runs with `--runtime runc --cgroup-manager cgroupfs` (crun fails on hybrid cgroup hosts).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import kmock
import yaml

from tracemesh_images.podman_args import PodmanRun, podman_run
from tracemesh_operator.kmock_cluster import operator_ready, write_kubeconfig

REPO = Path(__file__).resolve().parents[2]
BASE_SCRIPT = REPO / "images/base/stand-in-python-slim.sh"
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
# Limits below any CI host's, not podman's defaults (1M open files): setting those needs
# CAP_SYS_RESOURCE, which a sandboxed CI root may lack (runc: "error setting rlimit type 7").
RUN_FLAGS = ("--ulimit", "nofile=8192:8192", "--ulimit", "nproc=4096:4096")
PREFIX = "tmsmoke-"
HOST_IP, CTL_IP, CTL_POD_SIDE_IP, POD_IP = "10.214.0.1", "10.214.0.2", "10.214.0.5", "10.214.0.6"
DISCOVERY_HOST = "tracemesh-discovery.istio-system.svc"
WEBHOOK_HOST = "tracemesh-webhook.istio-system.svc"
KUBECONFIG_IN_CONTAINER = "/var/run/kmock/kubeconfig"
WAIT_S = 120.0


@dataclass(frozen=True)
class Image:
    name: str  # operator, proxy, bookinfo-details, ...
    dockerfile: str
    build_args: tuple[str, ...] = ()


IMAGES = (
    Image("operator", "images/operator/Dockerfile"),
    Image("proxy", "images/proxy/Dockerfile"),
    *(Image(f"bookinfo-{service}", "samples/bookinfo/Dockerfile", (f"SERVICE={service}",))
      for service in ("productpage", "details", "reviews", "ratings")),
)


class SmokeFailed(RuntimeError):
    pass


def sh(argv: Sequence[str], *, check: bool = True, timeout_s: float = 600.0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=False)
    if check and done.returncode != 0:
        raise SmokeFailed(f"{' '.join(argv)} failed ({done.returncode}):\n{(done.stderr or done.stdout)[-3000:]}")
    return done


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh([*PODMAN, *args], check=check)


def report(step: str, text: str) -> None:
    print(f"[images-smoke] {step:<10} {text}", flush=True)


# ---------------------------------------------------------------------------------------------
# 1. images


def build_images(repo: str, version: str) -> dict[str, str]:
    """image name -> full reference, each built by buildah from the Dockerfile as it is."""
    started = time.monotonic()
    done = sh(["bash", str(BASE_SCRIPT)], timeout_s=1800)
    for line in done.stdout.splitlines():
        report("base", line.removeprefix("base: "))
    report("base", f"ready in {time.monotonic() - started:.0f}s")
    built = {}
    dangling_before = _dangling_images()
    for image in IMAGES:
        reference = f"{repo}/{image.name}:{version}"
        started = time.monotonic()
        # --network host: RUN steps reach Debian's mirror and PyPI without a CNI network. No --layers:
        # buildah 1.28 reuses a cached `RUN --mount=type=bind,from=build` layer although the mounted
        # wheels changed, which would install the previous build's tracemesh.
        argv = ["buildah", "bud", "--quiet", "--network", "host", "--runtime", "runc",
                "-f", image.dockerfile, "-t", reference]
        for build_arg in image.build_args:
            argv += ["--build-arg", build_arg]
        sh([*argv, str(REPO)], timeout_s=1800)
        size = podman("image", "inspect", "--format", "{{.Size}}", reference).stdout.strip()
        report("built", f"{reference}  ({int(size) / 1e6:.0f} MB, {time.monotonic() - started:.0f}s)")
        built[image.name] = reference
    # This run's build stages and the previous run's images it replaced: the disk stays flat run after run.
    for image_id in sorted(_dangling_images() - dangling_before):
        podman("rmi", image_id, check=False)
    return built


def _dangling_images() -> set[str]:
    return set(podman("images", "--quiet", "--no-trunc", "--filter", "dangling=true").stdout.split())


# ---------------------------------------------------------------------------------------------
# 2. network


@dataclass(frozen=True)
class Network:
    ctl: str
    pod: str
    host_link: str


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def remove_leftovers() -> None:
    """Namespaces and containers of smoke runs whose process is gone (a killed run)."""
    for name in sorted(os.listdir("/run/netns")) if Path("/run/netns").is_dir() else []:
        match = re.match(rf"^{PREFIX}(\d+)-", name)
        if match and not _alive(int(match.group(1))):
            sh(["ip", "netns", "delete", name], check=False)
    listed = podman("ps", "-a", "--format", "{{.Names}}", check=False).stdout.split()
    for name in listed:
        match = re.match(rf"^{PREFIX}(\d+)-", name)
        if match and not _alive(int(match.group(1))):
            podman("rm", "-f", name, check=False)


@contextlib.contextmanager
def network() -> Iterator[Network]:
    pid = os.getpid()
    net = Network(ctl=f"{PREFIX}{pid}-ctl", pod=f"{PREFIX}{pid}-pod", host_link=f"tms{pid}h"[:15])
    try:
        for namespace in (net.ctl, net.pod):
            sh(["ip", "netns", "add", namespace])
            sh(["ip", "-n", namespace, "link", "set", "lo", "up"])
        sh(["ip", "link", "add", net.host_link, "type", "veth", "peer", "name", "eth0", "netns", net.ctl])
        sh(["ip", "addr", "add", f"{HOST_IP}/30", "dev", net.host_link])
        sh(["ip", "link", "set", net.host_link, "up"])
        sh(["ip", "-n", net.ctl, "addr", "add", f"{CTL_IP}/30", "dev", "eth0"])
        sh(["ip", "-n", net.ctl, "link", "set", "eth0", "up"])
        sh(["ip", "-n", net.ctl, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", net.pod])
        sh(["ip", "-n", net.ctl, "addr", "add", f"{CTL_POD_SIDE_IP}/30", "dev", "eth1"])
        sh(["ip", "-n", net.ctl, "link", "set", "eth1", "up"])
        sh(["ip", "-n", net.pod, "addr", "add", f"{POD_IP}/30", "dev", "eth0"])
        sh(["ip", "-n", net.pod, "link", "set", "eth0", "up"])
        yield net
    finally:
        for namespace in (net.pod, net.ctl):  # the veths go with them
            sh(["ip", "netns", "delete", namespace], check=False)


def curl_in(namespace: str, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """An HTTP request made from inside a network namespace (as another pod would make it)."""
    return sh(["ip", "netns", "exec", namespace, "curl", "-sS", "--max-time", "5", *extra, url], check=False)


# ---------------------------------------------------------------------------------------------
# 3.-5. containers


def manifest_documents(path: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((REPO / path).read_text()) if doc]


def retagged(document: dict[str, Any], references: dict[str, str]) -> dict[str, Any]:
    """The document with each docker.io/tracemesh/NAME:TAG replaced by the built reference (as make deploy does)."""
    text = json.dumps(document)
    text = re.sub(r"docker\.io/tracemesh/([a-z-]+):[0-9A-Za-z._-]+", lambda m: references[m.group(1)], text)
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def deployment_pod(path: str, name: str, pod_name: str, namespace: str, pod_ip: str,
                   references: dict[str, str]) -> dict[str, Any]:
    """The pod a Deployment of `path` would create, with the status the kubelet would fill in."""
    (deployment,) = [doc for doc in manifest_documents(path)
                     if doc["kind"] == "Deployment" and doc["metadata"]["name"] == name]
    template = retagged(deployment["spec"]["template"], references)
    metadata = {**template["metadata"], "name": pod_name, "namespace": namespace}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"],
            "status": {"podIP": pod_ip}}


@dataclass
class Ran:
    container: str
    image: str
    applied: list[str]  # the security settings it ran under (PodmanRun.applied)
    proved: list[str]  # what was checked while it ran


class Containers:
    """Starts containers under this run's name prefix and removes them all at the end."""

    def __init__(self) -> None:
        self.prefix = f"{PREFIX}{os.getpid()}-"
        self.started: list[str] = []
        self.ran: list[Ran] = []

    def start(self, run: PodmanRun, *flags: str, detach: bool = True) -> str:
        name = self.prefix + run.name
        self.started.append(name)
        if detach:
            podman(*run.command(name, "--detach", *RUN_FLAGS, *flags))
        else:
            done = podman(*run.command(name, *RUN_FLAGS, *flags), check=False)
            if done.returncode != 0:
                raise SmokeFailed(f"{run.name} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return name

    def logs(self, name: str) -> str:
        done = podman("logs", "--tail", "40", name, check=False)
        return done.stdout + done.stderr

    def remove_all(self) -> None:
        for name in reversed(self.started):
            podman("rm", "--force", "--time", "2", name, check=False)


def process_ids(name: str) -> str:
    """`uid gid` (the real ids) of the container's first process, read from inside it."""
    status = podman("exec", name, "cat", "/proc/1/status").stdout
    return " ".join(line.split()[1] for line in status.splitlines() if line.startswith(("Uid:", "Gid:")))


def checked_identity(run: PodmanRun, name: str) -> str:
    """The process's Uid/Gid; `runAsNonRoot` without a uid is checked here, as the kubelet checks the image's USER."""
    uid, gid = process_ids(name).split()
    if "runAsNonRoot" in run.applied and uid == "0":
        raise SmokeFailed(f"{run.name} runs as root although its securityContext says runAsNonRoot")
    return f"its process runs as uid {uid}, gid {gid}"


def checked_read_only_root(name: str) -> str:
    """Writes to / from inside the container: it must fail as a read-only file system does."""
    done = podman("exec", name, "touch", "/smoke-write-test", check=False)
    if done.returncode == 0 or "Read-only file system" not in done.stderr:
        raise SmokeFailed(f"{name}: writing to / did not fail as on a read-only root ({done.stderr.strip()!r})")
    return "writing to / fails: read-only file system"


def checked_compiled_build(name: str) -> str:
    """The image's sidecar runs its request path compiled by mypyc (the build stage's wheel), as it logs at start."""
    done = podman("logs", name, check=False)
    line = next((line for line in (done.stdout + done.stderr).splitlines() if "sidecar build: " in line), "")
    if "sidecar build: compiled (mypyc)" not in line:
        raise SmokeFailed(f"istio-proxy does not run the compiled build: {line or 'no build line in its log'}")
    return line.split("sidecar build: ", 1)[1]


async def kube_create(session: aiohttp.ClientSession, base: str, path: str, body: dict[str, Any]) -> None:
    async with session.post(base + path, json=body) as reply:
        if reply.status not in (200, 201):
            raise SmokeFailed(f"kmock refused POST {path}: {reply.status} {await reply.text()}")


async def kube_get(session: aiohttp.ClientSession, base: str, path: str) -> dict[str, Any]:
    async with session.get(base + path) as reply:
        result: dict[str, Any] = await reply.json() if reply.status == 200 else {}
        return result


async def wait_for(what: str, condition: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
    """Until `condition()` (or the coroutine it returns) gives something true; returns that.

    Never blocks the event loop: kmock, in this loop, keeps serving the operator's watches meanwhile.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise SmokeFailed(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.5)


def answers(namespace: str, url: str) -> Callable[[], Any]:
    """A check for wait_for: `url` answers 2xx from inside `namespace` (curl in a thread)."""
    return lambda: asyncio.to_thread(lambda: curl_in(namespace, url, "-f").returncode == 0)


async def run_containers(references: dict[str, str], net: Network, containers: Containers, work: Path) -> None:
    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator, host=HOST_IP):
        with operator_ready(emulator):
            base = str(emulator.url).rstrip("/")
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                    await _run_with_api(session, base, references, net, containers, work)
            finally:
                # Before kmock stops: its shutdown waits for the operator's open watch connections.
                await asyncio.to_thread(containers.remove_all)


async def _run_with_api(session: aiohttp.ClientSession, base: str, references: dict[str, str], net: Network,
                        containers: Containers, work: Path) -> None:
    for namespace, labels in (("istio-system", {}), ("default", {"istio-injection": "enabled"})):
        await kube_create(session, base, "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"kubernetes.io/metadata.name": namespace, **labels}}})
    (webhook_configuration,) = [doc for doc in manifest_documents("manifests/webhook.yaml")
                                if doc["kind"] == "MutatingWebhookConfiguration"]
    await kube_create(session, base, "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
                      webhook_configuration)

    # 3. The operator, as manifests/operator.yaml runs it.
    operator_pod = deployment_pod("manifests/operator.yaml", "tracemesh-operator", "tracemesh-operator-smoke",
                                  "istio-system", CTL_IP, references)
    kubeconfig = write_kubeconfig(work / "kubeconfig", base)
    kubeconfig.chmod(0o644)
    operator_run = podman_run(operator_pod, operator_pod["spec"]["containers"][0], "operator")
    operator = containers.start(operator_run, "--network", f"ns:/run/netns/{net.ctl}",
                                "--volume", f"{kubeconfig}:{KUBECONFIG_IN_CONTAINER}:ro",
                                "--env", f"KUBECONFIG={KUBECONFIG_IN_CONTAINER}")

    async def operator_ready_now() -> bool:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with session.get(f"http://{CTL_IP}:15010/healthz") as reply:
                return reply.status == 200
        return False

    try:
        await wait_for("the operator container to answer on 15010", operator_ready_now)
    except SmokeFailed:
        raise SmokeFailed("the operator container never became ready:\n" + containers.logs(operator)) from None
    path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/" + \
        webhook_configuration["metadata"]["name"]

    async def ca_bundle() -> str:
        entries = (await kube_get(session, base, path)).get("webhooks") or []
        bundles = {entry.get("clientConfig", {}).get("caBundle") for entry in entries}
        return next(iter(bundles)) if len(bundles) == 1 and None not in bundles and "" not in bundles else ""

    bundle = await wait_for("the operator to write the webhook's caBundle", ca_bundle)
    containers.ran.append(Ran(operator, operator_run.image, operator_run.applied, [
        checked_identity(operator_run, operator),
        checked_read_only_root(operator),
        "ready on 15010 against kmock", "wrote its CA into both webhook entries' caBundle"]))

    # 4. Bookinfo details through the operator container's webhook, as the API server sends it.
    details = deployment_pod("samples/bookinfo/platform/kube/bookinfo.yaml", "details-v1", "details-v1-smoke",
                             "default", POD_IP, references)
    namespace_entry = next(entry for entry in webhook_configuration["webhooks"]
                           if entry["namespaceSelector"].get("matchLabels", {}).get("istio-injection") == "enabled")
    webhook_path = namespace_entry["clientConfig"]["service"]["path"]
    trust = ssl.create_default_context(cadata=base64.b64decode(bundle).decode())
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "images-smoke-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "default",
        "operation": "CREATE", "object": {key: details[key] for key in ("apiVersion", "kind", "metadata", "spec")}}}
    async with session.post(f"https://{CTL_IP}:15017{webhook_path}", json=review, ssl=trust,
                            server_hostname=WEBHOOK_HOST) as reply:
        answer = await reply.json()
    response = answer.get("response") or {}
    if not response.get("allowed") or "patch" not in response:
        raise SmokeFailed(f"the webhook did not inject details: {answer}")
    patch = json.loads(base64.b64decode(response["patch"]))
    injected: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(details), patch)
    await kube_create(session, base, "/api/v1/namespaces/default/pods", injected)
    report("webhook", f"{webhook_path} over TLS verified with the caBundle: details injected "
           f"({', '.join(c['name'] for c in injected['spec'].get('initContainers', []))})")

    # 5. The injected pod, container by container, in its own network namespace.
    pod_network = f"ns:/run/netns/{net.pod}"
    init_spec, proxy_spec = injected["spec"]["initContainers"][:2]
    init_run = podman_run(injected, init_spec, init_spec["name"])
    containers.start(init_run, "--network", pod_network, detach=False)
    rules = podman("run", "--rm", *RUN_FLAGS, "--network", pod_network,
                   "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
                   "--user", "0:0", "--entrypoint", '["iptables-save"]', references["proxy"], "-t", "nat").stdout
    if "--to-ports 15006" not in rules or "--to-ports 15001" not in rules:
        raise SmokeFailed(f"istio-init exited 0 but the pod has no capture rules:\n{rules}")
    containers.ran.append(Ran(init_run.name, init_run.image, init_run.applied, [
        "exited 0", "nat rules redirect inbound to 15006 and outbound to 15001 in the pod's netns"]))

    proxy_run = podman_run(injected, proxy_spec, proxy_spec["name"])
    proxy = containers.start(proxy_run, "--network", pod_network, "--add-host", f"{DISCOVERY_HOST}:{CTL_POD_SIDE_IP}")
    try:
        await wait_for("istio-proxy /healthz/ready (a config in force)",
                       answers(net.ctl, f"http://{POD_IP}:15021/healthz/ready"))
    except SmokeFailed:
        raise SmokeFailed("istio-proxy never became ready:\n" + containers.logs(proxy)
                          + "\noperator:\n" + containers.logs(operator)) from None
    async with session.get(f"http://{CTL_IP}:15010/v1/proxy-config/default/details-v1-smoke") as reply:
        served_version = reply.headers.get("X-Tracemesh-Version", "")
    if not served_version:
        raise SmokeFailed(f"the operator serves no config for default/details-v1-smoke ({reply.status})")

    def in_force() -> Any:
        return asyncio.to_thread(lambda: served_version in curl_in(net.pod, "http://127.0.0.1:15000/config_dump").stdout)

    await wait_for(f"the sidecar's config_dump to hold the operator's version {served_version}", in_force)
    containers.ran.append(Ran(proxy, proxy_run.image, proxy_run.applied, [
        checked_identity(proxy_run, proxy),
        checked_read_only_root(proxy),
        f"ready with config version {served_version} synced from the operator container on 15010",
        checked_compiled_build(proxy)]))
    if process_ids(proxy).split()[0] != "1337":
        raise SmokeFailed("istio-proxy does not run as uid 1337")

    app_spec = injected["spec"]["containers"][0]
    app_run = podman_run(injected, app_spec, app_spec["name"])
    app = containers.start(app_run, "--network", pod_network)
    before = _inbound_requests(net)
    await wait_for("details to answer GET /details/0 from another pod", answers(net.ctl, f"http://{POD_IP}:9080/details/0"))
    after = _inbound_requests(net)
    if after <= before:
        raise SmokeFailed(f"details answered, but not through the sidecar (inbound requests {before} -> {after})")
    containers.ran.append(Ran(app, app_run.image, app_run.applied, [
        checked_identity(app_run, app),
        f"answered {POD_IP}:9080 from the ctl netns through the capture "
        f"(sidecar inbound requests {before} -> {after})"]))


def _inbound_requests(net: Network) -> int:
    """Requests the sidecar's inbound listener took (its admin /stats, on the pod's loopback only)."""
    for line in curl_in(net.pod, "http://127.0.0.1:15000/stats").stdout.splitlines():
        name, _, value = line.partition(": ")
        if name == "inbound.downstream_rq_total":
            return int(float(value))
    return 0


def preflight() -> str | None:
    """Why the smoke cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (buildah, podman and network namespaces)"
    missing = [tool for tool in ("buildah", "podman", "debootstrap", "runc", "ip", "curl")
               if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0]
    if missing:
        return f"missing {', '.join(missing)} (Debian packages buildah podman debootstrap runc iproute2 curl)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="images-smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="0.1.0")
    parser.add_argument("--image-repo", default="docker.io/tracemesh")
    args = parser.parse_args(argv)
    reason = preflight()
    if reason:
        print(f"images-smoke cannot run: {reason}", file=sys.stderr)
        return 2
    started = time.monotonic()
    containers = Containers()
    try:
        remove_leftovers()
        references = build_images(args.image_repo, args.version)
        with network() as net, tempfile.TemporaryDirectory(prefix="tracemesh-smoke-") as work:
            Path(work).chmod(0o755)
            asyncio.run(run_containers(references, net, containers, Path(work)))
    except SmokeFailed as failure:
        print(f"[images-smoke] FAILED: {failure}", file=sys.stderr)
        return 1
    for ran in containers.ran:
        report("ran", f"{ran.container.removeprefix(containers.prefix)} ({ran.image})")
        report("", f"  under its manifest's security context: {', '.join(ran.applied) or 'the image defaults'}")
        for proof in ran.proved:
            report("", f"  - {proof}")
    report("done", f"{len(references)} images built, {len(containers.ran)} containers proved, "
           f"{time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
