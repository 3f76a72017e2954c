"""kubectl, as the kind tests use it: run a command, apply a document, port-forward a Service."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import yaml

_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


def kubectl(args: Sequence[str], stdin: str | None = None, timeout_s: float = 120.0) -> str:
    done = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=timeout_s,
                          check=False)
    if done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def kubectl_json(args: Sequence[str]) -> Any:
    return json.loads(kubectl([*args, "-o", "json"]))


def apply(document: dict[str, Any]) -> None:
    kubectl(["apply", "-f", "-"], stdin=yaml.safe_dump(document))


class PortForward:
    """`kubectl port-forward svc/NAME :PORT` on an ephemeral local port, stopped on exit."""

    def __init__(self, namespace: str, service: str, port: int) -> None:
        self.argv = ["kubectl", "port-forward", "-n", namespace, f"svc/{service}", f":{port}"]
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> PortForward:
        self._process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self._process.stdout is not None
        for _, line in zip(range(20), self._process.stdout, strict=False):
            if match := _FORWARDING.search(line):
                self.url = f"http://127.0.0.1:{match.group(1)}"
                # kubectl logs every connection it handles: keep reading so that it never blocks on a full pipe.
                threading.Thread(target=self._process.stdout.read, daemon=True).start()
                return self
        self.__exit__(None, None, None)
        raise AssertionError(f"{' '.join(self.argv)} did not start forwarding")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
