"""Reading untrusted mappings (YAML/JSON documents) with errors that name the field and the fix.

Hand-written rather than a schema library because every error must say where it is
(`tracing.client.samplingPercentage`), what is wrong and how to fix it, in one line an
operator can put into a Kubernetes status condition.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final, NoReturn

from tracemesh_sidecar.durations import parse_duration_s


class ConfigError(ValueError):
    """A configuration value is wrong: `field` is its dotted path, `problem` what is wrong, `fix` what to do."""

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{field}: {problem}; {fix}")


_BARE_SECONDS: Final = re.compile(r"\d+(?:\.\d+)?")
_MISSING: Final[Any] = object()


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def parse_duration(value: object, field: str) -> float:
    """Seconds from a number, a string of seconds, or a duration string (`2s`, `500ms`, `1.5s`, `1m30s`)."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = "".join(value.split())
        with contextlib.suppress(ValueError):  # left None: the error below names the field
            seconds = float(text) if _BARE_SECONDS.fullmatch(text) else parse_duration_s(text)
    if seconds is None:
        _fail(field, f"must be a duration, got {value!r}", "write it like 2s or 500ms")
    if not math.isfinite(seconds) or seconds < 0:
        _fail(field, f"must be a non-negative duration, got {value!r}", "write it like 2s or 500ms")
    return seconds


def format_duration(seconds: float) -> str:
    """A duration as the document writes it (`2s`, `0.5s`)."""
    # repr() is the shortest text that reads back as the same float; its exponent form (below 1e-4 s or
    # from 1e16 s), which the duration syntax lacks, is replaced by fixed digits.
    text = repr(float(seconds))
    if "e" in text:
        text = f"{seconds:.9f}"
    return text.rstrip("0").rstrip(".") + "s"


def check_host_port(value: str, path: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(path, f"is {value!r}", "write it as host:port, e.g. 127.0.0.1:15001")
    return host.strip("[]"), int(port)


def _fail(field: str, problem: str, fix: str) -> NoReturn:
    raise ConfigError(field, problem, fix)


class Fields:
    """One mapping of a document being read; `done()` rejects keys nobody asked for."""

    def __init__(self, data: object, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            _fail(path or "document", f"must be a mapping, got {type(data).__name__}", "write it as key: value pairs")
        self._data: Mapping[str, Any] = data
        self._path = path
        self._read: set[str] = set()

    @property
    def path(self) -> str:
        return self._path

    def has(self, key: str) -> bool:
        return self._data.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        self._read.add(key)
        value = self._data.get(key)
        return default if value is None else value

    def _get(self, key: str, default: Any) -> Any:
        self._read.add(key)
        value = self._data.get(key)
        if value is None:
            if default is _MISSING:
                _fail(join(self._path, key), "is required", f"set {key}")
            return default
        return value

    def string(self, key: str, default: Any = _MISSING, *, allow_empty: bool = False) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if not isinstance(value, str):
            _fail(join(self._path, key), f"must be a string, got {value!r}", "quote the value")
        if not allow_empty and not value.strip():
            _fail(join(self._path, key), "must not be empty", f"give {key} a value or leave it out")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _MISSING) -> Any:
        value = self.string(key, default)
        if value is not default and value not in choices:
            _fail(join(self._path, key), f"is {value!r}", f"use one of {', '.join(choices)}")
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if not isinstance(value, bool):
            _fail(join(self._path, key), f"must be true or false, got {value!r}", "write true or false")
        return value

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int | None = None,
                maximum: int | None = None) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(join(self._path, key), f"must be a whole number, got {value!r}", "write a number like 9080")
        _check_range(join(self._path, key), value, minimum, maximum)
        return value

    def port(self, key: str, default: Any = _MISSING) -> Any:
        return self.integer(key, default, minimum=1, maximum=65535)

    def number(self, key: str, default: Any = _MISSING, *, minimum: float | None = None,
               maximum: float | None = None) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            _fail(join(self._path, key), f"must be a number, got {value!r}", "write a number like 1.5")
        _check_range(join(self._path, key), value, minimum, maximum)
        return float(value)

    def duration(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        return parse_duration(value, join(self._path, key))

    def mapping(self, key: str) -> Fields:
        return Fields(self._get(key, {}), join(self._path, key))

    def string_map(self, key: str) -> dict[str, str]:
        fields = self.mapping(key)
        result: dict[str, str] = {}
        for name in fields.keys():  # noqa: SIM118 (Fields is not a dict)
            result[name] = str(fields.string(name, allow_empty=True))
        return result

    def items(self, key: str) -> Iterator[tuple[str, Any]]:
        """The elements of a list field with their paths."""
        value = self._get(key, [])
        if not isinstance(value, list):
            _fail(join(self._path, key), f"must be a list, got {type(value).__name__}", "write it as a YAML list")
        for index, item in enumerate(value):
            yield join(join(self._path, key), index), item

    def keys(self) -> list[str]:
        return [str(key) for key in self._data]

    def done(self) -> None:
        unknown = sorted(str(key) for key in self._data if key not in self._read)
        if unknown:
            known = ", ".join(sorted(self._read)) or "none"
            _fail(join(self._path, unknown[0]), "is not a known field", f"remove it or use one of: {known}")


def _check_range(field: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        _fail(field, f"is {value}, below the minimum {minimum}", f"use a value from {minimum} up")
    if maximum is not None and value > maximum:
        _fail(field, f"is {value}, above the maximum {maximum}", f"use a value up to {maximum}")
