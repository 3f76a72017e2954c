"""apply_rules and `tracemesh iptables` against a scripted runner: decisions and error messages."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tracemesh_cli.main import main
from tracemesh_sidecar.iptables import CaptureError, CaptureSpec, apply_rules, build_rules
from tracemesh_sidecar.iptables.apply import NO_CAPABILITY_FIX, run_command

RULES = build_rules(CaptureSpec(inbound_ports=(9080,)))


class FakeIptables:
    """Keeps the nat table as iptables-save lines and answers -C, restore and save like the real tools."""

    def __init__(self, present_jumps: Sequence[str] = (), check_stderr: str = "", check_status: int | None = None):
        self.saved: list[str] = list(present_jumps)
        self.check_stderr = check_stderr
        self.check_status = check_status
        self.restored: list[str] = []

    def __call__(self, argv: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
        if argv[0] == "iptables":
            line = " ".join(("-A", *argv[4:]))
            if self.check_status is not None:
                return self.check_status, "", self.check_stderr
            return (0, "", "") if line in self.saved else (1, "", "iptables: Bad rule")
        if argv[0] == "iptables-restore":
            assert stdin is not None
            self.restored.append(stdin)
            ours = [line for line in stdin.splitlines() if line.startswith("-A TRACEMESH_")]
            jumps = [line for line in stdin.splitlines() if line.startswith(("-A PREROUTING", "-A OUTPUT"))]
            self.saved = [line for line in self.saved if not line.startswith("-A TRACEMESH_")] + ours + jumps
            return 0, "", ""
        assert list(argv) == ["iptables-save", "-t", "nat"]
        return 0, "*nat\n" + "\n".join(self.saved) + "\nCOMMIT\n", ""


def test_first_run_adds_both_jumps_second_run_adds_none_and_one_set_remains() -> None:
    table = FakeIptables()
    first = apply_rules(RULES, table)
    second = apply_rules(RULES, table)
    assert len(first.added_jumps) == 2 and second.added_jumps == ()
    assert second.counts == {"TRACEMESH_INBOUND": 1, "TRACEMESH_IN_REDIRECT": 1, "TRACEMESH_OUTPUT": 4,
                             "TRACEMESH_REDIRECT": 1, "jumps": 2}
    assert "-A PREROUTING" not in table.restored[1]


def test_a_missing_chain_counts_as_a_missing_jump() -> None:
    table = FakeIptables(check_status=2, check_stderr="iptables v1.8.9: Chain 'TRACEMESH_INBOUND' does not exist")
    table_applied = apply_rules(RULES, table)
    assert len(table_applied.added_jumps) == 2


@pytest.mark.parametrize("stderr", [
    "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)",
    "iptables v1.8.9 (legacy): can't initialize iptables table `nat': Permission denied (you must be root)",
])
def test_permission_denied_names_the_capabilities(stderr: str) -> None:
    with pytest.raises(CaptureError) as caught:
        apply_rules(RULES, FakeIptables(check_status=4, check_stderr=stderr))
    assert caught.value.fix == NO_CAPABILITY_FIX and "NET_ADMIN" in str(caught.value)


def test_an_unexpected_failure_is_reported_with_iptables_own_words() -> None:
    with pytest.raises(CaptureError, match="Illegal option"):
        apply_rules(RULES, FakeIptables(check_status=3, check_stderr="Illegal option `--uid-owner'"))


def test_a_table_that_does_not_hold_what_we_wrote_is_an_error() -> None:
    # Someone else's duplicate jump survives our flush: the read-back count catches it.
    table = FakeIptables(present_jumps=["-A PREROUTING -p tcp -j TRACEMESH_INBOUND"] * 2)
    with pytest.raises(CaptureError, match="expected"):
        apply_rules(RULES, table)


def test_missing_binary_names_the_package() -> None:
    with pytest.raises(CaptureError, match="apt-get install iptables"):
        run_command(["tracemesh-no-such-iptables-binary"], None)


def test_cli_dry_run_prints_the_whole_rule_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["iptables", "--dry-run", "--inbound-ports", "9080", "--exclude-outbound-ports", "3306"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("*nat\n") and out.endswith("COMMIT\n")
    assert "-A TRACEMESH_INBOUND -p tcp -m tcp --dport 9080 -j TRACEMESH_IN_REDIRECT" in out
    assert "-A TRACEMESH_OUTPUT -p tcp -m tcp --dport 3306 -j RETURN" in out
    assert "-A PREROUTING -p tcp -j TRACEMESH_INBOUND" in out and "-A OUTPUT -p tcp -j TRACEMESH_OUTPUT" in out


@pytest.mark.parametrize(("argv", "flag"), [
    (["--inbound-ports", "http"], "--inbound-ports"),
    (["--exclude-outbound-ip-ranges", "10.0.0.0/40"], "--exclude-outbound-ip-ranges"),
    (["--proxy-uid", "-5"], "--proxy-uid"),
])
def test_cli_bad_flags_exit_2_naming_the_flag(argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["iptables", "--dry-run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tracemesh iptables: {flag}:")


def test_cli_without_iptables_on_path_exits_2_with_the_fix(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["iptables"]) == 2
    assert "iptables was not found on PATH; install iptables" in capsys.readouterr().err
