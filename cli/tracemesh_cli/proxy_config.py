"""`tracemesh proxy-config tracing|clusters|listeners POD[.NAMESPACE]`, like `istioctl proxy-config`.

Reads what the sidecar runs, as istioctl does: the sidecar's admin `/config_dump` on port 15000,
which listens on the pod's loopback only, reached through the API server's port-forward (the
official client; no kubectl). Not the operator's discovery server: that holds the version sent,
which a sidecar may not run (yet, or rejected it: `tracemesh proxy-status` shows which), and its
endpoint is a subscription that would count this command as the pod's sidecar.
`-f FILE` reads a saved config_dump instead (istioctl's --file), and needs no cluster.
Table by default; `-o json|yaml` prints the config_dump's sections the view is made of.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from tracemesh_cli.kube_client import Cluster, ClusterError, add_cluster_arguments, context_namespace
from tracemesh_cli.port_forward import OpenTunnel, kube_tunnel
from tracemesh_cli.proxy_config_tables import VIEWS, render, section
from tracemesh_operator.injection.mutation import proxy_container_name
from tracemesh_sidecar.config import ConfigError, parse_proxy_config

ADMIN_PORT = 15000
CONFIG_DUMP = "/config_dump"


class NoConfigDump(Exception):
    """The config_dump could not be had: the message says why and what to do."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("view", choices=VIEWS, help="what to show")
    parser.add_argument("pod", nargs="?", default="", metavar="POD[.NAMESPACE]",
                        help="the pod whose sidecar to ask (not needed with -f)")
    parser.add_argument("-n", "--namespace", default="", help="the pod's namespace (default: the context's)")
    parser.add_argument("-o", "--output", choices=("short", "json", "yaml"), default="short",
                        help="short (a table, the default), json or yaml")
    parser.add_argument("-f", "--file", default="", help="a config_dump JSON file to read instead of a sidecar")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        dump = _read_file(args.file) if args.file else _from_sidecar(args)
        config = parse_proxy_config(dump)
    except (NoConfigDump, ClusterError) as error:
        print(f"tracemesh proxy-config: {error}", file=sys.stderr)
        return 1
    except ConfigError as error:
        print(f"tracemesh proxy-config: the config_dump is not a tracemesh proxy config: {error}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(section(dump, args.view), indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(section(dump, args.view), sort_keys=False), end="")
    else:
        print(render(config, args.view), end="")
    return 0


def pod_and_namespace(argument: str, namespace: str) -> tuple[str, str]:
    """istioctl's `name[.namespace]`: a dot in the argument names the namespace; else -n's."""
    name, dot, in_argument = argument.partition(".")
    return name, in_argument if dot else namespace


def fetch_config_dump(open_tunnel: OpenTunnel) -> dict[str, Any]:
    """GET /config_dump over one tunnel to the admin port."""
    connection = http.client.HTTPConnection("localhost", ADMIN_PORT, timeout=10)
    try:
        connection.sock = open_tunnel()
        connection.request("GET", CONFIG_DUMP, headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as error:
        raise NoConfigDump(f"GET {CONFIG_DUMP} on the admin port {ADMIN_PORT}: {error}") from error
    except Exception as error:  # the port-forward itself refused (the client raises its own errors)
        raise NoConfigDump(f"cannot port-forward to the admin port {ADMIN_PORT}: {error}") from error
    finally:
        connection.close()
    if response.status != 200:
        raise NoConfigDump(f"GET {CONFIG_DUMP}: HTTP {response.status} {body[:200].decode(errors='replace')}")
    try:
        document = json.loads(body)
    except ValueError as error:
        raise NoConfigDump(f"GET {CONFIG_DUMP}: not JSON ({error})") from error
    if not isinstance(document, dict):
        raise NoConfigDump(f"GET {CONFIG_DUMP}: not a JSON object")
    return document


def _from_sidecar(args: argparse.Namespace) -> dict[str, Any]:
    if not args.pod:
        raise NoConfigDump("name a pod (POD[.NAMESPACE]), or give a config_dump file with -f")
    cluster = Cluster.connect(args.kubeconfig, args.context)
    name, namespace = pod_and_namespace(args.pod, args.namespace or context_namespace(args.kubeconfig, args.context))
    pod = cluster.get("v1", "Pod", name, namespace)
    if pod is None:
        raise NoConfigDump(f"pod {namespace}/{name} not found; give POD.NAMESPACE or -n NAMESPACE")
    if proxy_container_name(pod) is None:
        raise NoConfigDump(f"pod {namespace}/{name} has no sidecar (no istio-proxy container); "
                           "is its namespace labelled istio-injection=enabled, and was it restarted since?")
    return fetch_config_dump(kube_tunnel(cluster.api, name, namespace, ADMIN_PORT))


def _read_file(path: str) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise NoConfigDump(f"cannot read {path}: {error}") from error
    if not isinstance(document, dict):
        raise NoConfigDump(f"{path} is not a JSON object (save one with: curl 127.0.0.1:15000/config_dump)")
    return document
