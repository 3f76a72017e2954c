"""`tracemesh uninstall [--purge]`: istioctl uninstall for tracemesh.

Deletes what `tracemesh install` applied, newest first: the MeshConfig, then the control plane.
The istio-system Namespace stays (istioctl leaves it too; `kubectl delete namespace istio-system`).
As istioctl's `--purge`, `--purge` also deletes the CRDs, and with them every Telemetry and
MeshConfig in the cluster; without it they stay.
"""

from __future__ import annotations

import argparse
import sys

from tracemesh_cli.install import add_change_arguments, confirm
from tracemesh_cli.install_manifests import read_manifests
from tracemesh_cli.kube_client import Cluster, ClusterError, object_name
from tracemesh_sidecar.config import ConfigError

NAMESPACE_KIND = "Namespace"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--purge", action="store_true",
                        help="also delete the CRDs (and so every Telemetry and MeshConfig), as istioctl --purge")
    add_change_arguments(parser, "print what would be deleted; change nothing")


def run(args: argparse.Namespace) -> int:
    try:
        manifests = read_manifests(args.manifests)
    except (ConfigError, OSError) as error:
        print(f"tracemesh uninstall: {error}", file=sys.stderr)
        return 2
    doomed = [manifests.default_meshconfig,
              *reversed([body for body in manifests.control_plane if body.get("kind") != NAMESPACE_KIND]),
              *(manifests.crds if args.purge else ())]
    if args.dry_run:
        print("\n".join(f"would delete {object_name(body)}" for body in doomed))
        return 0
    try:
        cluster = Cluster.connect(args.kubeconfig, args.context)
        what = "the control plane and the CRDs (every Telemetry and MeshConfig)" if args.purge else "the control plane"
        if not confirm(f"This will delete {what} from the cluster at {cluster.api.configuration.host}. "
                       "Proceed? (y/N) ", args.skip_confirmation):
            print("tracemesh uninstall: cancelled", file=sys.stderr)
            return 1
        for body in doomed:
            deleted = cluster.delete(body)
            print(f"{'✔ removed' if deleted else '- not there:'} {object_name(body)}", flush=True)
    except ClusterError as error:
        print(f"tracemesh uninstall: {error}", file=sys.stderr)
        return 1
    if not args.purge:
        print("The CRDs stay (tracemesh uninstall --purge removes them).")
    return 0
