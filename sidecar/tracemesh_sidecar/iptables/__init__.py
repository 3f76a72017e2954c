"""The pod's transparent capture: iptables rules that send its TCP through the sidecar."""

from tracemesh_sidecar.iptables.apply import Applied, CaptureError, apply_rules
from tracemesh_sidecar.iptables.rules import CHAINS, Rule, RuleSet, build_rules, count_our_rules, restore_text
from tracemesh_sidecar.iptables.spec import (
    ALWAYS_EXCLUDED_INBOUND_PORTS,
    INBOUND_CAPTURE_PORT,
    OUTBOUND_CAPTURE_PORT,
    PROXY_UID,
    CaptureSpec,
)

__all__ = [
    "ALWAYS_EXCLUDED_INBOUND_PORTS",
    "CHAINS",
    "INBOUND_CAPTURE_PORT",
    "OUTBOUND_CAPTURE_PORT",
    "PROXY_UID",
    "Applied",
    "CaptureError",
    "CaptureSpec",
    "Rule",
    "RuleSet",
    "apply_rules",
    "build_rules",
    "count_our_rules",
    "restore_text",
]
