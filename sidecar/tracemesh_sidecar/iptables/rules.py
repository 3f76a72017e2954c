"""CaptureSpec -> the nat-table rules that steer a pod's TCP through its proxy. Pure.

The layout follows Istio's istio-iptables so that anyone who has debugged a mesh pod
recognises it:

    PREROUTING -p tcp -> TRACEMESH_INBOUND       inbound: RETURN for excluded ports, the rest
                         -> TRACEMESH_IN_REDIRECT   -> REDIRECT to 15006
    OUTPUT     -p tcp -> TRACEMESH_OUTPUT        outbound: RETURN for the proxy's own traffic
                         -> TRACEMESH_REDIRECT      (UID 1337), loopback, excluded ports/ranges;
                                                    the rest -> REDIRECT to 15001

The rules are written in iptables-save's canonical spelling (`-p tcp -m tcp --dport`), so
that what `iptables-save` prints back matches them line for line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tracemesh_sidecar.iptables.spec import CaptureSpec

TABLE = "nat"
INBOUND_CHAIN = "TRACEMESH_INBOUND"
IN_REDIRECT_CHAIN = "TRACEMESH_IN_REDIRECT"
OUTPUT_CHAIN = "TRACEMESH_OUTPUT"
REDIRECT_CHAIN = "TRACEMESH_REDIRECT"
CHAINS = (INBOUND_CHAIN, IN_REDIRECT_CHAIN, OUTPUT_CHAIN, REDIRECT_CHAIN)
LOOPBACK_RANGE = "127.0.0.0/8"
LOCALHOST = "127.0.0.1/32"


@dataclass(frozen=True, slots=True)
class Rule:
    chain: str
    args: tuple[str, ...]

    @property
    def line(self) -> str:
        """The rule as iptables-save and iptables-restore write it."""
        return " ".join(("-A", self.chain, *self.args))


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]  # the contents of our own chains, in order
    jumps: tuple[Rule, ...]  # the rules in the built-in chains that lead into ours


def _tcp_port(port: int) -> tuple[str, ...]:
    return ("-p", "tcp", "-m", "tcp", "--dport", str(port))


def _owner(uid: int) -> tuple[str, ...]:
    return ("-m", "owner", "--uid-owner", str(uid))


def build_rules(spec: CaptureSpec) -> RuleSet:
    return RuleSet(rules=_inbound(spec) + _outbound(spec), jumps=(
        Rule("PREROUTING", ("-p", "tcp", "-j", INBOUND_CHAIN)),
        Rule("OUTPUT", ("-p", "tcp", "-j", OUTPUT_CHAIN)),
    ))


def _inbound(spec: CaptureSpec) -> tuple[Rule, ...]:
    redirect = Rule(IN_REDIRECT_CHAIN, ("-p", "tcp", "-j", "REDIRECT", "--to-ports", str(spec.inbound_capture_port)))
    captured = spec.captured_inbound
    if captured is None:  # every port but the excluded ones
        return (
            *(Rule(INBOUND_CHAIN, (*_tcp_port(port), "-j", "RETURN")) for port in spec.excluded_inbound),
            Rule(INBOUND_CHAIN, ("-p", "tcp", "-j", IN_REDIRECT_CHAIN)),
            redirect,
        )
    return (
        *(Rule(INBOUND_CHAIN, (*_tcp_port(port), "-j", IN_REDIRECT_CHAIN)) for port in captured),
        redirect,
    )


def _outbound(spec: CaptureSpec) -> tuple[Rule, ...]:
    return (
        *(Rule(OUTPUT_CHAIN, (*_tcp_port(port), "-j", "RETURN")) for port in spec.exclude_outbound_ports),
        *(Rule(OUTPUT_CHAIN, ("-d", cidr, "-j", "RETURN")) for cidr in spec.exclude_outbound_ip_ranges),
        # The proxy calling its own pod IP (the app reached itself through its proxy): through
        # the inbound side, so that the hop gets its SERVER span like any other.
        Rule(OUTPUT_CHAIN, ("!", "-d", LOCALHOST, "-o", "lo", "-p", "tcp", *_owner(spec.proxy_uid),
                            "-j", IN_REDIRECT_CHAIN)),
        # The proxy's own upstream connections: capturing them would loop forever.
        Rule(OUTPUT_CHAIN, (*_owner(spec.proxy_uid), "-j", "RETURN")),
        # Loopback stays inside the pod (sidecar admin, app-local calls). The app calling its
        # own pod IP also leaves on `lo` but is not 127/8, so it is captured below.
        Rule(OUTPUT_CHAIN, ("-d", LOOPBACK_RANGE, "-j", "RETURN")),
        Rule(OUTPUT_CHAIN, ("-j", REDIRECT_CHAIN)),
        Rule(REDIRECT_CHAIN, ("-p", "tcp", "-j", "REDIRECT", "--to-ports", str(spec.outbound_capture_port))),
    )


def restore_text(rule_set: RuleSet, jumps: Sequence[Rule]) -> str:
    """Input for `iptables-restore --noflush`: declaring our chains creates them, or flushes them
    when they exist, so a second run replaces the first instead of adding to it. `jumps` are
    the jump rules to add: those not yet present (see apply), or all of them for a dry run."""
    lines = [f"*{TABLE}"]
    lines += [f":{chain} - [0:0]" for chain in CHAINS]
    lines += [rule.line for rule in rule_set.rules]
    lines += [rule.line for rule in jumps]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def check_args(rule: Rule) -> list[str]:
    """`iptables` arguments that test whether `rule` is present (exit status 0) or not (1)."""
    return ["-t", TABLE, "-C", rule.chain, *rule.args]


def count_our_rules(iptables_save_output: str) -> dict[str, int]:
    """How many rules each of our chains holds and how many jumps lead into them, from iptables-save."""
    counts = dict.fromkeys((*CHAINS, "jumps"), 0)
    for line in iptables_save_output.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0] != "-A":
            continue
        if parts[1] in CHAINS:
            counts[parts[1]] += 1
        elif any(parts[i] == "-j" and parts[i + 1] in CHAINS for i in range(len(parts) - 1)):
            counts["jumps"] += 1
    return counts
