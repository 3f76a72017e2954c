"""`tracemesh proxy-status [--discovery URL]`: every connected sidecar and its config version.

Like `istioctl proxy-status`: SYNCED when the sidecar runs the version the operator holds
for it, STALE when it does not (yet, or it rejected it: the reason is printed below the
table), NOT SENT when the operator has no config for that pod.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

DEFAULT_DISCOVERY = "http://127.0.0.1:15010"
ENV_DISCOVERY = "TRACEMESH_DISCOVERY"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--discovery", default=os.environ.get(ENV_DISCOVERY, DEFAULT_DISCOVERY),
                        help=f"the operator's config push address (default ${ENV_DISCOVERY} or {DEFAULT_DISCOVERY}; "
                             "in a cluster: kubectl -n istio-system port-forward svc/tracemesh-discovery 15010)")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    base = args.discovery if "://" in args.discovery else f"http://{args.discovery}"
    url = f"{base.rstrip('/')}/v1/proxies"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            rows = json.loads(response.read())["proxies"]
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as error:
        print(f"tracemesh proxy-status: cannot read {url} ({error}); is the operator running and "
              "port-forwarded? kubectl -n istio-system port-forward svc/tracemesh-discovery 15010",
              file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(render_table(rows, time.time()), end="")
    return 0


def render_table(rows: list[Mapping[str, Any]], now: float) -> str:
    header = ("NAME", "STATUS", "VERSION SENT", "VERSION IN FORCE", "LAST SEEN", "PEER")
    table = [header] + [(
        _pod_name(row), _status(row), str(row.get("versionSent") or "-"), str(row.get("versionInForce") or "-"),
        f"{max(0, int(now - float(row.get('lastSeen') or now)))}s ago", str(row.get("peer") or "-"),
    ) for row in rows]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
             for line in table]
    lines += [f"{_pod_name(row)}: {row['error']}" for row in rows if row.get("error")]
    return "\n".join(lines) + "\n"


def _pod_name(row: Mapping[str, Any]) -> str:
    namespace, _, pod = str(row.get("pod", "")).partition("/")
    return f"{pod}.{namespace}"  # istioctl's NAME column


def _status(row: Mapping[str, Any]) -> str:
    if not row.get("connected"):
        return "DISCONNECTED"
    if not row.get("versionSent"):
        return "NOT SENT"
    return "SYNCED" if row.get("synced") else "STALE"
