"""argparse types for the operator's commands: a bad value is refused at start-up, naming the option and the fix."""

from __future__ import annotations

import argparse

from tracemesh_operator.injection.mutation import DEFAULT_DISCOVERY_ADDRESS
from tracemesh_sidecar.config import ConfigError
from tracemesh_sidecar.config.model import check_host_port


def port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"is {text!r}; give a port number 1-65535")
    return int(text)


def host_port(text: str) -> str:
    # Checked here because it is injected into every pod: a bad one would otherwise surface only as
    # sidecars failing to start, far from its cause.
    try:
        check_host_port(text, "")
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"is {text!r}; write it as host:port, e.g. {DEFAULT_DISCOVERY_ADDRESS}") from None
    return text


def namespaced_name(text: str) -> str:
    namespace, slash, name = text.partition("/")
    if not (namespace and slash and name) or "/" in name:
        raise argparse.ArgumentTypeError(f"is {text!r}; write it as NAMESPACE/NAME, e.g. istio-system/default")
    return text
