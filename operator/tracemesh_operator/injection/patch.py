"""RFC 6902 JSON patches, as far as injection needs them: pointers and the `add` operation.

The webhook sends the patch to the API server, which applies it; `tracemesh kube-inject`
applies the same patch here, so offline and in-cluster injection can never differ.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any


def escape(token: str) -> str:
    """One JSON-pointer reference token: `sidecar.istio.io/status` -> `sidecar.istio.io~1status`."""
    return token.replace("~", "~0").replace("/", "~1")


def pointer(*tokens: str | int) -> str:
    return "".join(f"/{escape(str(token))}" for token in tokens)


def add(path: str, value: Any) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}


def apply_patch(document: Any, operations: Sequence[dict[str, Any]]) -> Any:
    """A patched deep copy of `document`; raises ValueError naming the operation that does not apply."""
    result = copy.deepcopy(document)
    for index, operation in enumerate(operations):
        if operation.get("op") != "add":
            raise ValueError(f"patch[{index}]: op {operation.get('op')!r} is not supported; only add is")
        result = _add(result, str(operation["path"]), copy.deepcopy(operation["value"]), index)
    return result


def _add(document: Any, path: str, value: Any, index: int) -> Any:
    if path == "":
        return value
    if not path.startswith("/"):
        raise ValueError(f"patch[{index}]: path {path!r} must start with /")
    tokens = [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]
    parent = document
    for token in tokens[:-1]:
        if isinstance(parent, dict) and token in parent:
            parent = parent[token]
        elif isinstance(parent, list) and token.isdigit() and int(token) < len(parent):
            parent = parent[int(token)]
        else:
            raise ValueError(f"patch[{index}]: {path} has no parent to add to")
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        position = len(parent) if last == "-" else int(last)
        if not 0 <= position <= len(parent):
            raise ValueError(f"patch[{index}]: index {position} is out of range for {path}")
        parent.insert(position, value)
    else:
        raise ValueError(f"patch[{index}]: {path} has no parent to add to")
    return document
