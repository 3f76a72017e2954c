"""istioctl's `--set path=value`, applied to a document: pure.

Follows istio/istio operator/pkg/values/map.go (SetPaths, setPathRecurse, splitPath, parseValue):
dots separate keys (`\\.` is a literal dot), `key[2]` indexes a list and appends when the index is
past its end, `key[name:zipkin]` picks the list entry whose `name` is `zipkin`; a value is an
int, else a float, else a bool (Go's strconv.ParseBool spellings), else a string (with `\\,` -> `,`).
"""

from __future__ import annotations

import re
from typing import Any

from tracemesh_sidecar.config import ConfigError

# Go's strconv.ParseBool.
_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
          "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}
# map.go alwaysString: values under these paths stay strings ("1.0" is a tag, not a number).
_ALWAYS_STRING = ("spec.tag", "spec.compatibilityVersion", "spec.meshConfig.defaultConfig.proxyMetadata.")
_INT = re.compile(r"[+-]?[0-9]+")


def parse_value(text: str) -> Any:
    if _INT.fullmatch(text):
        return int(text)
    try:
        if "_" not in text and text == text.strip():  # Go's ParseFloat takes neither digit separators nor spaces
            return float(text)
    except ValueError:
        pass
    if text in _BOOLS:
        return _BOOLS[text]
    return text.replace("\\,", ",")


def split_path(path: str) -> list[str]:
    """`a.b[0].c` -> ["a", "b", "[0]", "c"]; `a\\.b` is one key `a.b`."""
    segments: list[str] = []
    for raw in re.split(r"(?<!\\)\.", path.strip(".")):
        if not raw:
            continue
        key = raw.replace("\\.", ".")
        bracket = key.find("[")
        if bracket > 0:
            segments += [key[:bracket], key[bracket:]]
        else:
            segments.append(key)
    return segments


def apply_set_flag(document: dict[str, Any], flag: str, prefix: str = "spec.") -> None:
    """Applies one `--set path=value` (the path relative to `prefix`, as istioctl's SetSpecPaths)."""
    path, equals, text = flag.partition("=")
    path, text = prefix + path.strip(), text.strip()
    if not equals or not path.strip(".").removeprefix(prefix.strip(".")):
        raise ConfigError(f"--set {flag}", "is not path=value", "write it as --set meshConfig.enableTracing=true")
    value: Any = text if path.startswith(_ALWAYS_STRING) else parse_value(text)
    _set(document, split_path(path), value, f"--set {flag}")


def _set(base: dict[str, Any], segments: list[str], value: Any, field: str) -> None:
    key = segments[0]
    if key.startswith("["):
        raise ConfigError(field, f"{key} follows no key", "put the list's key before the index: key[0]")
    if len(segments) >= 2 and segments[1].startswith("["):
        items = base.setdefault(key, [])
        if not isinstance(items, list):
            raise ConfigError(field, f"{key!r} is not a list", "index only lists")
        index = _index(items, segments[1], field)
        rest = segments[2:]
        if index >= len(items):  # past the end: append, as map.go does
            if rest:
                entry: dict[str, Any] = {}
                _set(entry, rest, value, field)
                items.append(entry)
            else:
                items.append(value)
        elif not rest:
            items[index] = value
        else:
            target = items[index]
            if not isinstance(target, dict):
                raise ConfigError(field, f"{key}{segments[1]} is not a mapping", "set keys only inside mappings")
            _set(target, rest, value, field)
        return
    if len(segments) == 1:
        base[key] = value
        return
    child = base.setdefault(key, {})
    if not isinstance(child, dict):
        raise ConfigError(field, f"{key!r} is {child!r}, not a mapping", f"set {key} itself, or remove it first")
    _set(child, segments[1:], value, field)


def _index(items: list[Any], selector: str, field: str) -> int:
    inner = selector[1:-1] if selector.endswith("]") else None
    if inner is None:
        raise ConfigError(field, f"{selector} is not closed", "write [0] or [name:value]")
    if _INT.fullmatch(inner):
        index = int(inner)
        return len(items) if index < 0 else index
    key, colon, wanted = inner.partition(":")
    if not colon:
        raise ConfigError(field, f"{selector} is neither an index nor key:value", "write [0] or [name:zipkin]")
    for position, item in enumerate(items):
        if isinstance(item, dict) and item.get(key) == wanted:
            return position
    raise ConfigError(field, f"no list entry has {key}: {wanted}", f"list the entries' {key}s, or index by number")
