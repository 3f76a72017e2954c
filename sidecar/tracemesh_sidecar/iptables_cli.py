"""`tracemesh iptables`: install the pod's traffic-capture rules (what the injected init container runs).

    tracemesh iptables --proxy-uid 1337 --inbound-ports 9080 --exclude-outbound-ip-ranges 169.254.169.254/32
    tracemesh iptables --dry-run ...      print the rules (iptables-restore format), change nothing

Exit status 0 when the rules are in place, 2 on bad flags or when iptables is missing or not permitted.
"""

from __future__ import annotations

import argparse
import sys

from tracemesh_sidecar.config import ConfigError
from tracemesh_sidecar.iptables import CaptureError, apply_rules, build_rules, restore_text
from tracemesh_sidecar.iptables.spec import (
    ALWAYS_EXCLUDED_INBOUND_PORTS,
    INBOUND_CAPTURE_PORT,
    OUTBOUND_CAPTURE_PORT,
    PROXY_UID,
    CaptureSpec,
    parse_inbound_ports,
    parse_ip_ranges,
    parse_ports,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--proxy-uid", type=int, default=PROXY_UID,
                        help=f"UID the proxy runs as; its own traffic is never captured (default {PROXY_UID})")
    parser.add_argument("--inbound-capture-port", type=int, default=INBOUND_CAPTURE_PORT,
                        help=f"the proxy's inbound listener that incoming TCP goes to (default {INBOUND_CAPTURE_PORT})")
    parser.add_argument("--outbound-capture-port", type=int, default=OUTBOUND_CAPTURE_PORT,
                        help=f"the proxy's outbound listener for the app's TCP (default {OUTBOUND_CAPTURE_PORT})")
    parser.add_argument("--inbound-ports", default="*", metavar="PORTS",
                        help="incoming ports to capture, comma-separated, or * for all (annotation "
                             "traffic.sidecar.istio.io/includeInboundPorts; default *)")
    parser.add_argument("--exclude-inbound-ports", default="", metavar="PORTS",
                        help="incoming ports never captured, comma-separated (annotation traffic.sidecar.istio.io/"
                             f"excludeInboundPorts); {', '.join(map(str, ALWAYS_EXCLUDED_INBOUND_PORTS))} always are")
    parser.add_argument("--exclude-outbound-ports", default="", metavar="PORTS",
                        help="outgoing destination ports never captured, comma-separated "
                             "(annotation traffic.sidecar.istio.io/excludeOutboundPorts)")
    parser.add_argument("--exclude-outbound-ip-ranges", default="", metavar="CIDRS",
                        help="outgoing destination IPv4 ranges never captured, comma-separated "
                             "(annotation traffic.sidecar.istio.io/excludeOutboundIPRanges)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the rules in iptables-restore format and change nothing")


def spec_from_args(args: argparse.Namespace) -> CaptureSpec:
    return CaptureSpec(
        proxy_uid=args.proxy_uid,
        inbound_capture_port=args.inbound_capture_port,
        outbound_capture_port=args.outbound_capture_port,
        inbound_ports=parse_inbound_ports(args.inbound_ports, "--inbound-ports"),
        exclude_inbound_ports=parse_ports(args.exclude_inbound_ports, "--exclude-inbound-ports"),
        exclude_outbound_ports=parse_ports(args.exclude_outbound_ports, "--exclude-outbound-ports"),
        exclude_outbound_ip_ranges=parse_ip_ranges(args.exclude_outbound_ip_ranges, "--exclude-outbound-ip-ranges"),
    )


def run(args: argparse.Namespace) -> int:
    try:
        rule_set = build_rules(spec_from_args(args))
        if args.dry_run:
            sys.stdout.write(restore_text(rule_set, rule_set.jumps))
            return 0
        applied = apply_rules(rule_set)
    except (ConfigError, CaptureError) as error:
        print(f"tracemesh iptables: {error}", file=sys.stderr)
        return 2
    chains = ", ".join(f"{chain} {count}" for chain, count in applied.counts.items() if chain != "jumps")
    print(f"tracemesh iptables: capture rules in place (rules per chain: {chains}; "
          f"{len(applied.added_jumps)} jump rule(s) added, {applied.counts['jumps']} in force)")
    return 0
