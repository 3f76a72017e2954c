"""`tracemesh dashboard zipkin|jaeger|prometheus`: port-forward to a UI and print its URL, as `istioctl dashboard`.

Found as istioctl finds it (istioctl/pkg/dashboard/dashboard.go): the first pod labelled
`app=zipkin`, `app=jaeger` or `app.kubernetes.io/name=prometheus`, looked for in the Istio
namespace (-i, istio-system) and then in -n's; forwarded to the pod's port `--ui-port` (9411,
16686, 9090), not to a Service, so it works with tracemesh's addons (manifests/addons) and with
Istio's own (samples/addons/jaeger.yaml's Service `tracing` listens on 80, its pod on 16686).
The forwarding goes through the official client; no kubectl. Runs until Ctrl-C.

Local mode: with no kubeconfig to load and the embedded collector (`tracemesh collector`,
`tracemesh demo`) listening on the UI's port on this machine, prints (and with --browser opens) the
collector's own trace UI instead: where Zipkin serves its UI (/zipkin/) or Jaeger its (/).

    tracemesh dashboard zipkin                       http://127.0.0.1:9411/zipkin/
    tracemesh dashboard jaeger -p 8080 --browser=false
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import webbrowser
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tracemesh_cli.kube_client import Cluster, ClusterError, add_cluster_arguments, context_namespace
from tracemesh_cli.port_forward import kube_tunnel, listen, local_port_preferences, serve

ISTIO_NAMESPACE = "istio-system"
LOCAL_COLLECTOR = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Dashboard:
    title: str
    selector: str  # istioctl's label selector
    ui_port: int  # istioctl's default --ui-port
    local_ui_path: str | None  # where the embedded collector serves its trace UI on ui_port; None: no local mode


DASHBOARDS = {
    "zipkin": Dashboard("Zipkin", "app=zipkin", 9411, local_ui_path="/zipkin/"),
    "jaeger": Dashboard("Jaeger", "app=jaeger", 16686, local_ui_path="/"),
    "prometheus": Dashboard("Prometheus", "app.kubernetes.io/name=prometheus", 9090, local_ui_path=None),
}


def _flag(text: str) -> bool:
    """istioctl's boolean flags: --browser, --browser=false, --browser=true."""
    if text.lower() in ("true", "1", "t", "yes"):
        return True
    if text.lower() in ("false", "0", "f", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: write true or false")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(DASHBOARDS), help="which UI")
    parser.add_argument("--ui-port", type=int, default=0,
                        help="the UI's port in its pod (default: zipkin 9411, jaeger 16686, prometheus 9090)")
    parser.add_argument("-p", "--port", type=int, default=0,
                        help="local port to listen on (default: the UI's port, or any free one if that is taken)")
    parser.add_argument("--address", default="localhost", help="local address to listen on (default localhost)")
    parser.add_argument("-n", "--namespace", default="",
                        help="namespace to look in after the Istio namespace (default: the context's, or default)")
    parser.add_argument("-i", "--istioNamespace", dest="istio_namespace", default=ISTIO_NAMESPACE,
                        help="the Istio namespace, looked in first (default istio-system)")
    parser.add_argument("--browser", type=_flag, nargs="?", const=True, default=True, metavar="true|false",
                        help="open the URL in a browser (default true; --browser=false does not)")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    dashboard = DASHBOARDS[args.name]
    for flag, port in (("--port", args.port), ("--ui-port", args.ui_port)):
        if not 0 <= port < 65536:
            print(f"tracemesh dashboard: {flag} is {port}; use a port from 1 to 65535", file=sys.stderr)
            return 2
    remote_port = args.ui_port or dashboard.ui_port
    try:
        cluster = Cluster.connect(args.kubeconfig, args.context)
    except ClusterError as error:
        if (dashboard.local_ui_path is not None and not (args.kubeconfig or args.context)
                and _listening(LOCAL_COLLECTOR, remote_port)):
            _announce(f"http://{LOCAL_COLLECTOR}:{remote_port}{dashboard.local_ui_path}", args.browser,
                      "(the local collector's trace UI: no cluster)")
            return 0
        print(f"tracemesh dashboard: {error}", file=sys.stderr)
        return 1
    try:
        namespaces = [args.istio_namespace, args.namespace or context_namespace(args.kubeconfig, args.context)]
        pod = find_pod(namespaces, dashboard.selector,
                       lambda namespace: cluster.list("v1", "Pod", namespace, dashboard.selector))
        if pod is None:
            print(f"tracemesh dashboard: no pods found with selector {dashboard.selector} in "
                  f"{' or '.join(dict.fromkeys(namespaces))}; is the {args.name} addon installed "
                  f"(kubectl apply -f manifests/addons/{args.name}.yaml)?", file=sys.stderr)
            return 1
        name, namespace = pod
        listener = listen(args.address, local_port_preferences(args.port, remote_port))
    except (ClusterError, OSError) as error:
        print(f"tracemesh dashboard: {error}", file=sys.stderr)
        return 1
    with listener:
        host = args.address if ":" not in args.address else f"[{args.address}]"
        _announce(f"http://{host}:{listener.getsockname()[1]}", args.browser,
                  f"(port-forward to {dashboard.title} pod {namespace}/{name}:{remote_port}; Ctrl-C stops it)")
        stop = threading.Event()
        try:
            serve(listener, kube_tunnel(cluster.api, name, namespace, remote_port), stop,
                  lambda message: print(f"tracemesh dashboard: {message}", file=sys.stderr))
        except KeyboardInterrupt:
            stop.set()
    return 0


def find_pod(namespaces: Iterable[str], selector: str,
             list_pods: Callable[[str], list[dict[str, Any]]]) -> tuple[str, str] | None:
    """istioctl's inferPodMeta: the first pod the selector lists, in the first namespace that has one.

    The API server filters by the selector; the pods are matched again here, so that a server that
    lists more (kmock, which ignores selectors) cannot make it forward to the wrong pod.
    """
    wanted = dict(term.split("=", 1) for term in selector.split(","))
    for namespace in dict.fromkeys(namespaces):  # in order, each once
        try:
            pods = list_pods(namespace)
        except ClusterError:
            continue  # istioctl goes on to the next namespace
        for pod in pods:
            metadata: Mapping[str, Any] = pod.get("metadata") or {}
            labels = metadata.get("labels") or {}
            if all(labels.get(key) == value for key, value in wanted.items()):
                return str(metadata.get("name")), str(metadata.get("namespace") or namespace)
    return None


def _announce(url: str, browser: bool, note: str) -> None:
    print(url, flush=True)
    print(note, file=sys.stderr, flush=True)
    if browser:
        webbrowser.open(url)
    else:
        print("skipping opening a browser", file=sys.stderr, flush=True)  # istioctl's words


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
