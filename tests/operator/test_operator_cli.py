"""`tracemesh operator` refuses bad options at start-up, naming the option and the fix."""

from __future__ import annotations

import pytest

from tracemesh_cli.main import main


@pytest.mark.parametrize(("option", "value", "words"), [
    # Injected into every pod: a bad one would only show as sidecars failing to bootstrap.
    ("--discovery-address", "tracemesh-discovery", "host:port"),
    ("--discovery-port", "70000", "1-65535"),
    ("--webhook-port", "https", "1-65535"),
    ("--meshconfig", "default", "NAMESPACE/NAME"),
])
def test_bad_options_are_refused_naming_the_option(capsys: pytest.CaptureFixture[str], option: str, value: str,
                                                   words: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["operator", option, value])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert option in error and words in error and repr(value) in error


def test_kube_inject_refuses_a_bad_discovery_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["kube-inject", "-f", "-", "--discovery-address", "discovery:port"])
    assert exited.value.code == 2
    assert "--discovery-address: is 'discovery:port'; write it as host:port" in capsys.readouterr().err
