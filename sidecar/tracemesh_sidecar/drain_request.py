"""`python -m tracemesh_sidecar.drain_request`: tell the local proxy to drain inbound now (POST /drain).

The native sidecar's preStop hook, as Istio's `pilot-agent request POST drain`: the kubelet runs it
when the pod starts shutting down, while the apps get their SIGTERM; the proxy's own SIGTERM comes
once they have exited, and it then stops at once (tracemesh_sidecar/proxy/runtime.py terminate()).
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

DRAIN_URL = "http://127.0.0.1:15000/drain"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="drain_request", description=__doc__)
    parser.add_argument("--url", default=DRAIN_URL)
    args = parser.parse_args(argv)
    try:
        with urllib.request.urlopen(urllib.request.Request(args.url, method="POST"), timeout=5.0) as response:
            print(response.read().decode(errors="replace").strip())
            return 0
    except (urllib.error.URLError, OSError) as error:
        # The kubelet records a failed hook as an event and goes on terminating: say why.
        print(f"drain_request: {args.url}: {error}; the proxy drains on SIGTERM instead", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
