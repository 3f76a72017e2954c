"""`tracemesh install -f tracing.yaml`: istioctl install for tracemesh.

    tracemesh install -f samples/tracing.yaml --skip-confirmation
    tracemesh install --set meshConfig.extensionProviders[0].name=zipkin ... --dry-run

Takes IstioOperator documents (the Zipkin task's tracing.yaml as written) and `--set`; installs
the CRDs (waiting until they are Established), the control plane (manifests/, the kustomization's
resources) and the MeshConfig made from `spec.meshConfig`, all by server-side apply (field manager
`tracemesh`), then waits until the operator's Deployment is Available and the operator has
accepted the MeshConfig (its Ready condition). Running it again applies the same objects again:
nothing changes. What the document asks for that tracemesh cannot do is listed first, on stderr.
`--dry-run` prints the objects it would apply, as YAML, and touches no cluster.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, TextIO

import yaml

from tracemesh_cli.install_manifests import CRD_KIND, DEFAULT_MANIFESTS, ControlPlaneManifests, read_manifests
from tracemesh_cli.istio_operator import InstallPlan, read_istio_operator
from tracemesh_cli.kube_client import Cluster, ClusterError, add_cluster_arguments, object_name
from tracemesh_cli.readiness import NotReady, condition, is_true, observed_current, parse_duration, wait_until
from tracemesh_sidecar.config import ConfigError

DEPLOYMENT_KIND = "Deployment"
DEFAULT_READINESS_TIMEOUT = "300s"  # istioctl's --readiness-timeout default


class ClusterApi(Protocol):
    def apply(self, body: Mapping[str, Any]) -> None: ...
    def serves(self, api_version: str, kind: str) -> bool: ...
    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None: ...


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", action="append", default=[],
                        help="an IstioOperator YAML file (repeatable: later files override earlier ones)")
    parser.add_argument("-s", "--set", action="append", default=[], dest="set_flags", metavar="PATH=VALUE",
                        help="override a setting, e.g. --set meshConfig.extensionProviders[0].name=zipkin")
    parser.add_argument("--readiness-timeout", default=DEFAULT_READINESS_TIMEOUT,
                        help="how long to wait for readiness (a duration: 300s, 5m; default 300s)")
    add_change_arguments(parser, "print what would be applied, as YAML; change nothing")


def add_change_arguments(parser: argparse.ArgumentParser, dry_run_help: str) -> None:
    """What install and uninstall both take: -y, --dry-run, the manifests, the cluster."""
    parser.add_argument("-y", "--skip-confirmation", action="store_true", help="do not ask before changing the cluster")
    parser.add_argument("--dry-run", action="store_true", help=dry_run_help)
    parser.add_argument("-d", "--manifests", type=Path, default=DEFAULT_MANIFESTS,
                        help="tracemesh's manifests directory (default: the repository's manifests/)")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        timeout_s = parse_duration(args.readiness_timeout)
        manifests = read_manifests(args.manifests)
        plan = read_istio_operator([(path, _load(path)) for path in args.filename], args.set_flags,
                                   manifests.default_meshconfig)
    except (ConfigError, ValueError, OSError, yaml.YAMLError) as error:
        print(f"tracemesh install: {error}", file=sys.stderr)
        return 2
    for item in plan.not_honoured:
        print(f"! not honoured: {item}", file=sys.stderr)
    objects = [*manifests.crds, *manifests.control_plane, plan.meshconfig]
    if args.dry_run:
        print(yaml.safe_dump_all(objects, sort_keys=False), end="")
        return 0
    try:
        cluster = Cluster.connect(args.kubeconfig, args.context)
        where = cluster.api.configuration.host
        if not confirm(f"This will install tracemesh (its CRDs, the operator in istio-system and "
                       f"{object_name(plan.meshconfig)}) into the cluster at {where}. Proceed? (y/N) ",
                       args.skip_confirmation):
            print("tracemesh install: cancelled", file=sys.stderr)
            return 1
        install(cluster, manifests, plan, timeout_s, sys.stdout)
    except (ClusterError, NotReady) as error:
        print(f"tracemesh install: {error}", file=sys.stderr)
        return 1
    return 0


def confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    print(question, end="", flush=True)
    try:
        answer = input()
    except EOFError:  # no terminal: say how to go on without one
        print("\nno answer on stdin; pass -y (--skip-confirmation) to proceed without asking", file=sys.stderr)
        return False
    return answer.strip().lower() in ("y", "yes")


def install(cluster: ClusterApi, manifests: ControlPlaneManifests, plan: InstallPlan, timeout_s: float,
            out: TextIO) -> None:
    for crd in manifests.crds:
        cluster.apply(crd)
    for crd in manifests.crds:
        _wait_for(cluster, crd, "Established", timeout_s)
    api_version, kind = str(plan.meshconfig["apiVersion"]), str(plan.meshconfig["kind"])
    wait_until(lambda: True if cluster.serves(api_version, kind) else None, timeout_s,
               f"the API server's discovery of {kind} ({api_version})")
    print("✔ CRDs installed", file=out, flush=True)
    for body in manifests.control_plane:
        cluster.apply(body)
    cluster.apply(plan.meshconfig)
    for body in manifests.control_plane:
        if body.get("kind") == DEPLOYMENT_KIND:
            _wait_for(cluster, body, "Available", timeout_s)
    print("✔ Control plane installed", file=out, flush=True)
    accepted = _wait_for(cluster, plan.meshconfig, "Ready", timeout_s, settled=True)
    if not is_true(accepted, "Ready"):
        ready = condition(accepted, "Ready") or {}
        raise NotReady(f"{object_name(plan.meshconfig)} is not accepted: {ready.get('reason')}: "
                       f"{ready.get('message')}")
    print(f"✔ {object_name(plan.meshconfig)}: {(condition(accepted, 'Ready') or {}).get('message')}",
          file=out, flush=True)
    print("✔ Installation complete", file=out, flush=True)


def _wait_for(cluster: ClusterApi, body: Mapping[str, Any], kind: str, timeout_s: float,
              settled: bool = False) -> dict[str, Any]:
    """The object once its `kind` condition is True (or, `settled`, says anything about this generation)."""
    metadata = body.get("metadata") or {}
    api_version, object_kind = str(body["apiVersion"]), str(body["kind"])
    name, namespace = str(metadata.get("name")), metadata.get("namespace") if object_kind != CRD_KIND else None

    def current() -> dict[str, Any] | None:
        found = cluster.get(api_version, object_kind, name, namespace)
        entry = condition(found, kind)
        if found is None or entry is None or not observed_current(found, entry):
            return None
        return found if settled or entry.get("status") == "True" else None

    def why_not() -> str:
        found = cluster.get(api_version, object_kind, name, namespace)
        entry = condition(found, kind)
        return f"{kind}: {entry.get('reason')}: {entry.get('message')}" if entry else f"no {kind} condition yet"

    return wait_until(current, timeout_s, object_name(body), why_not)


def _load(path: str) -> Any:
    documents = [doc for doc in yaml.safe_load_all(Path(path).read_text()) if doc is not None]
    if len(documents) != 1:
        raise ConfigError(path, f"holds {len(documents)} YAML documents", "give one IstioOperator per -f file")
    return documents[0]

