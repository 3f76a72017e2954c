"""`tracemesh dashboard`: the kubectl port-forward it runs, the URL it prints, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tracemesh_cli.main import main


def fake_kubectl(directory: Path, exit_status: int = 0) -> Path:
    """A kubectl that records its arguments, says it forwards, and exits."""
    record = directory / "argv"
    script = directory / "kubectl"
    script.write_text(f'#!/bin/sh\necho "$@" > {record}\necho "Forwarding from 127.0.0.1:1 -> 1"\n'
                      f"exit {exit_status}\n")
    script.chmod(0o755)
    return record


@pytest.mark.parametrize(("name", "forwarded", "url"), [
    ("zipkin", "svc/zipkin 9411:9411", "http://localhost:9411/zipkin/"),
    ("jaeger", "svc/tracing 16686:16686", "http://localhost:16686/"),
])
def test_port_forwards_the_addon_service_and_prints_the_url(name: str, forwarded: str, url: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    record = fake_kubectl(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert main(["dashboard", name]) == 0
    assert capsys.readouterr().out.strip() == url
    assert record.read_text().strip() == f"port-forward -n istio-system {forwarded} --address localhost"


def test_port_namespace_and_context_are_passed_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    record = fake_kubectl(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert main(["dashboard", "jaeger", "-n", "tracing", "-p", "8080", "--context", "kind-tracemesh"]) == 0
    assert capsys.readouterr().out.strip() == "http://localhost:8080/"
    assert record.read_text().split() == ["port-forward", "-n", "tracing", "svc/tracing", "8080:16686",
                                          "--address", "localhost", "--context", "kind-tracemesh"]


def test_a_failing_port_forward_says_what_to_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    fake_kubectl(tmp_path, exit_status=1)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert main(["dashboard", "zipkin"]) == 1
    assert "kubectl apply -f manifests/addons/zipkin.yaml" in capsys.readouterr().err


def test_missing_kubectl_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["dashboard", "zipkin"]) == 2
    assert "kubectl was not found; install kubectl" in capsys.readouterr().err


def test_an_unknown_dashboard_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["dashboard", "grafana"])
    assert caught.value.code == 2
    assert "invalid choice: 'grafana'" in capsys.readouterr().err
