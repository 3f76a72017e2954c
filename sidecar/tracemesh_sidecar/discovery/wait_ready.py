"""`python -m tracemesh_sidecar.discovery.wait_ready`: returns once the local proxy reports ready.

The injected proxy's postStart hook when the cluster has no native sidecars: the kubelet
does not start the next container (the app) until this returns, so the app never sends a
request that capture would hand to a proxy not yet listening.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request

READY_URL = "http://127.0.0.1:15021/healthz/ready"
POLL_INTERVAL_S = 0.2


def wait_ready(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, or not ready (an HTTP error status): try again
        time.sleep(POLL_INTERVAL_S)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wait_ready", description=__doc__)
    parser.add_argument("--url", default=READY_URL)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    args = parser.parse_args(argv)
    if wait_ready(args.url, args.timeout):
        return 0
    print(f"wait_ready: {args.url} not ready after {args.timeout:g}s; is the proxy starting?", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
