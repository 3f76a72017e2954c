"""Install the capture rules: the thin I/O shell around rules.py.

Idempotent: one `iptables-restore --noflush` creates or flushes our chains and refills them,
and adds a jump rule into them only when `iptables -C` says it is not there yet. Running it
twice leaves exactly one set of rules.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tracemesh_sidecar.iptables.rules import (
    CHAINS,
    TABLE,
    Rule,
    RuleSet,
    check_args,
    count_our_rules,
    restore_text,
)

# Runs one command with optional stdin text; returns (exit status, stdout, stderr).
Runner = Callable[[Sequence[str], str | None], tuple[int, str, str]]

NO_CAPABILITY_FIX = (
    "run it as root with the NET_ADMIN and NET_RAW capabilities (the injected init container has "
    "securityContext.capabilities.add: [NET_ADMIN, NET_RAW] and runAsUser: 0)"
)
NO_IPTABLES_FIX = (
    "install iptables (Debian: apt-get install iptables) or run the init container from the "
    "tracemesh proxy image, which carries it"
)
_PERMISSION_WORDS = ("permission denied", "you must be root", "operation not permitted")


class CaptureError(Exception):
    """The rules could not be installed; `fix` says what to do about it."""

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}; {fix}")


@dataclass(frozen=True, slots=True)
class Applied:
    added_jumps: tuple[Rule, ...]
    counts: dict[str, int]  # rules per chain of ours and "jumps", read back from iptables-save


def run_command(argv: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        raise CaptureError(f"{argv[0]} was not found on PATH", NO_IPTABLES_FIX) from None
    except PermissionError:
        raise CaptureError(f"{argv[0]} could not be executed (permission denied)", NO_CAPABILITY_FIX) from None
    return done.returncode, done.stdout, done.stderr


def apply_rules(rule_set: RuleSet, run: Runner = run_command) -> Applied:
    missing = tuple(jump for jump in rule_set.jumps if not _present(jump, run))
    _check(run(["iptables-restore", "--noflush"], restore_text(rule_set, missing)), "iptables-restore")
    status, saved, stderr = run(["iptables-save", "-t", TABLE], None)
    _check((status, saved, stderr), "iptables-save")
    counts = count_our_rules(saved)
    expected = {chain: sum(rule.chain == chain for rule in rule_set.rules) for chain in CHAINS}
    expected["jumps"] = len(rule_set.jumps)
    if counts != expected:
        raise CaptureError(f"after installing, the nat table holds {counts}, expected {expected}",
                           "something else edits our chains concurrently; remove the TRACEMESH_* chains and rerun")
    return Applied(added_jumps=missing, counts=counts)


def _present(jump: Rule, run: Runner) -> bool:
    status, _, stderr = run(["iptables", *check_args(jump)], None)
    if status == 0:
        return True
    _raise_if_not_permitted(stderr, "iptables")
    # 1: no such rule; 2: our chain does not exist yet, so neither does the jump.
    if status in (1, 2):
        return False
    raise CaptureError(f"iptables {' '.join(check_args(jump))} failed ({status}): {stderr.strip()}",
                       "check that the iptables in the image works in this kernel (nf_tables or legacy)")


def _check(result: tuple[int, str, str], command: str) -> None:
    status, _, stderr = result
    if status == 0:
        return
    _raise_if_not_permitted(stderr, command)
    raise CaptureError(f"{command} failed ({status}): {stderr.strip()}",
                       "check that the iptables in the image works in this kernel (nf_tables or legacy)")


def _raise_if_not_permitted(stderr: str, command: str) -> None:
    if any(word in stderr.lower() for word in _PERMISSION_WORDS):
        raise CaptureError(f"{command} was not permitted to change the nat table ({stderr.strip()})",
                           NO_CAPABILITY_FIX)
