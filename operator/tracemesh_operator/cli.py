"""`tracemesh operator`: the control plane (kopf operator, config push on 15010, webhook on 15017)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import kopf

from tracemesh_operator.arguments import host_port, namespaced_name, port
from tracemesh_operator.control_plane import ControlPlane, Options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Options()
    parser.add_argument("--host", default=defaults.host, help="address the servers listen on (default %(default)s)")
    parser.add_argument("--discovery-port", type=port, default=defaults.discovery_port,
                        help="config push port sidecars subscribe to (default %(default)s)")
    parser.add_argument("--webhook-port", type=port, default=defaults.webhook_port,
                        help="HTTPS admission webhook port (default %(default)s)")
    parser.add_argument("--no-webhook", action="store_true", help="do not serve the injection webhook")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="watch only this namespace (repeatable; include the root namespace, istio-system)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch the whole cluster (the default)")
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument("--standalone", action="store_true",
                         help="run without kopf peering objects (the default; run one replica)")
    peering.add_argument("--peering", metavar="NAME", help="coordinate replicas through kopf's peering object NAME")
    parser.add_argument("--liveness", default=defaults.liveness, metavar="URL",
                        help="kopf's liveness endpoint (default %(default)s)")
    parser.add_argument("--discovery-address", type=host_port, default=defaults.discovery_address, metavar="HOST:PORT",
                        help="the address injected sidecars subscribe to (default %(default)s)")
    parser.add_argument("--meshconfig", type=namespaced_name, default=defaults.mesh_config, metavar="NAMESPACE/NAME",
                        help="the MeshConfig that configures the mesh (default %(default)s)")
    parser.add_argument("--cert-dir", type=Path, metavar="DIR",
                        help="webhook certificate (tls.crt, tls.key, ca.crt); without it a self-signed CA is made")
    parser.add_argument("--proxy-image", default=defaults.proxy_image, help="injected image (default %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        host=args.host,
        discovery_port=args.discovery_port,
        webhook_port=None if args.no_webhook else args.webhook_port,
        namespaces=tuple(args.namespace),
        peering=args.peering,
        liveness=args.liveness or None,
        discovery_address=args.discovery_address,
        mesh_config=args.meshconfig,
        cert_dir=args.cert_dir,
        proxy_image=args.proxy_image,
    )


def run(args: argparse.Namespace) -> int:
    kopf.configure(verbose=args.verbose)
    try:
        asyncio.run(ControlPlane(options_from(args)).run())
    except kopf.LoginError:
        print("tracemesh operator: no Kubernetes credentials: run it in a pod with a service account, "
              "or point KUBECONFIG (or ~/.kube/config) at the cluster", file=sys.stderr)
        return 1
    except OSError as error:  # a port in use, an unwritable certificate directory
        print(f"tracemesh operator: {error}", file=sys.stderr)
        return 1
    return 0
