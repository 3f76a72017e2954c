"""Reading a proxy config document (YAML or JSON) from a file."""

from __future__ import annotations

from pathlib import Path

import yaml

from tracemesh_sidecar.config.fields import ConfigError
from tracemesh_sidecar.config.model import ProxyConfig, parse_proxy_config


def load_proxy_config(path: str | Path) -> ProxyConfig:
    """Parse `path` (YAML, of which JSON is a subset); every problem is a ConfigError naming field and fix."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(str(path), f"cannot be read ({error.strerror or error})",
                          "check the --config path and its permissions") from error
    except UnicodeDecodeError as error:
        raise ConfigError(str(path), "is not UTF-8 text", "save the file as UTF-8 YAML or JSON") from error
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(str(path), f"is not valid YAML/JSON{line}: {problem}",
                          "fix the syntax (indentation, quotes, colons)") from error
    if document is None:
        raise ConfigError(str(path), "is empty", "write a ProxyConfig document (node, listeners, tracing, providers)")
    return parse_proxy_config(document)
