"""`tracemesh dashboard zipkin|jaeger`: port-forward to a tracing UI and print its URL, like
`istioctl dashboard zipkin|jaeger`. Runs `kubectl port-forward` until Ctrl-C.

    tracemesh dashboard zipkin                 http://localhost:9411/zipkin/
    tracemesh dashboard jaeger --port 8080     http://localhost:8080/
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import webbrowser
from dataclasses import dataclass

KUBECTL_FIX = "install kubectl (https://kubernetes.io/docs/tasks/tools/) and put it on PATH"


@dataclass(frozen=True, slots=True)
class Dashboard:
    service: str  # in the addons' namespace (manifests/addons)
    port: int
    path: str


DASHBOARDS = {
    "zipkin": Dashboard(service="zipkin", port=9411, path="/zipkin/"),
    "jaeger": Dashboard(service="tracing", port=16686, path="/"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(DASHBOARDS), help="which UI: zipkin or jaeger")
    parser.add_argument("-n", "--namespace", default="istio-system",
                        help="namespace the addon runs in (default istio-system)")
    parser.add_argument("-p", "--port", type=int, default=0,
                        help="local port (default: the UI's own port, 9411 or 16686)")
    parser.add_argument("--address", default="localhost", help="local address to listen on (default localhost)")
    parser.add_argument("--context", default="", help="kubeconfig context to use (default: the current one)")
    parser.add_argument("--browser", action="store_true", help="also open the URL in a browser")


def port_forward_command(args: argparse.Namespace, kubectl: str) -> tuple[list[str], str]:
    """The kubectl command line and the URL it makes the UI reachable at."""
    dashboard = DASHBOARDS[args.name]
    local_port = args.port or dashboard.port
    argv = [kubectl, "port-forward", "-n", args.namespace, f"svc/{dashboard.service}",
            f"{local_port}:{dashboard.port}", "--address", args.address]
    if args.context:
        argv += ["--context", args.context]
    return argv, f"http://{args.address}:{local_port}{dashboard.path}"


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port < 65536:
        print(f"tracemesh dashboard: --port is {args.port}; use a port from 1 to 65535", file=sys.stderr)
        return 2
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print(f"tracemesh dashboard: kubectl was not found; {KUBECTL_FIX}", file=sys.stderr)
        return 2
    argv, url = port_forward_command(args, kubectl)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as forward:
        assert forward.stdout is not None
        # kubectl says "Forwarding from ..." once it listens: only then is the URL worth printing.
        for line in forward.stdout:
            if line.startswith("Forwarding from"):
                print(url, flush=True)
                if args.browser:
                    webbrowser.open(url)
                break
        try:
            status = forward.wait()
        except KeyboardInterrupt:
            forward.terminate()
            forward.wait()
            return 0
    if status != 0:
        print(f"tracemesh dashboard: kubectl port-forward exited {status}; is the {args.name} addon installed "
              f"(kubectl apply -f manifests/addons/{args.name}.yaml) and is the cluster reachable?", file=sys.stderr)
        return 1
    return 0
