"""`tracemesh SUBCOMMAND ...`: dispatches to the module that owns each job.

Subcommand modules are imported only when used, so `tracemesh proxy` never pays for the
operator's imports (kopf, kubernetes) and vice versa. Each module has
`add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tracemesh_cli.demo", "run Bookinfo locally with sidecars and a collector, print a trace"),
    "proxy": ("tracemesh_sidecar.cli", "run the sidecar proxy from a proxy config document"),
    "collector": ("tracemesh_collector.cli", "run the embedded Zipkin/Jaeger-compatible trace collector"),
    "traces": ("tracemesh_cli.traces", "print recent traces from a Zipkin-API or Jaeger-API backend"),
    "operator": ("tracemesh_operator.cli", "run the control plane (kopf operator, config push, webhook)"),
    "kube-inject": ("tracemesh_operator.kube_inject_cli", "print a manifest with the sidecar injected"),
    "proxy-status": ("tracemesh_operator.proxy_status_cli", "list connected sidecars and their config versions"),
    "iptables": ("tracemesh_sidecar.iptables_cli", "install the pod's traffic-capture rules"),
    "dashboard": ("tracemesh_cli.dashboard", "port-forward to a UI (zipkin, jaeger, prometheus) and print its URL"),
    "install": ("tracemesh_cli.install", "install the control plane and the mesh config from an IstioOperator file"),
    "uninstall": ("tracemesh_cli.uninstall", "remove the control plane (--purge: the CRDs too)"),
    "proxy-config": ("tracemesh_cli.proxy_config", "a sidecar's tracing, clusters or listeners, like istioctl"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"tracemesh: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"tracemesh {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    try:
        return int(module.run(parser.parse_args(rest)) or 0)
    except KeyboardInterrupt:
        return 130


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name:<{width}}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
    return "usage: tracemesh COMMAND [options]\n\ncommands:\n" + "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
