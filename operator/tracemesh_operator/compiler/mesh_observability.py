"""MeshConfig -> the providers and defaults of Istio's metrics and access logs.

What pilot reads (istio/istio pkg/config/mesh/mesh.go DefaultMeshConfig, pilot/pkg/model/telemetry_logging.go):
- the built-in extension providers `prometheus`, `stackdriver` and `envoy` (a file access log to /dev/stdout),
  which a provider of the same name in `extensionProviders` replaces;
- `defaultProviders.metrics` and `.accessLogging` (Istio's Helm chart installs `metrics: [prometheus]`, which is
  the default here when `defaultProviders.metrics` is not set);
- `accessLogFile`, `accessLogEncoding`, `accessLogFormat`: the access log every proxy writes when no Telemetry
  configures access logging (the "legacy mesh config setting"), and the format of the built-in `envoy`
  provider (FileAccessLogFromMeshConfig).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tracemesh_operator.compiler.model import Problem, Rejected
from tracemesh_operator.compiler.providers import MESH_RESOURCE, provider_kind
from tracemesh_sidecar.config import ConfigError
from tracemesh_sidecar.config.fields import Fields, join
from tracemesh_sidecar.config.observability import ACCESS_LOG_ENCODINGS, AccessLogSink
from tracemesh_sidecar.telemetry.logformat import FormatError, check_format

PROMETHEUS = "prometheus"
FILE_ACCESS_LOG = "envoyFileAccessLog"
BUILTIN_ENVOY = "envoy"  # telemetry_logging.go builtinEnvoyAccessLogProvider
DEV_STDOUT = "/dev/stdout"
# mesh.go DefaultMeshConfig's ExtensionProviders: name -> kind.
BUILTIN_PROVIDERS: Mapping[str, str] = {PROMETHEUS: PROMETHEUS, "stackdriver": "stackdriver",
                                        BUILTIN_ENVOY: FILE_ACCESS_LOG}
DEFAULT_METRICS_PROVIDERS = (PROMETHEUS,)  # Istio's Helm chart: defaultProviders.metrics [prometheus]
# The kinds that are access loggers (telemetryAccessLog); only the file log is written by the sidecar.
ACCESS_LOG_KINDS = frozenset({FILE_ACCESS_LOG, "envoyHttpAls", "envoyTcpAls", "envoyOtelAls"})
# The kinds that make metrics (buildHTTPTelemetryFilter); only prometheus is produced by the sidecar.
METRICS_KINDS = frozenset({PROMETHEUS, "stackdriver"})


@dataclass(frozen=True, slots=True)
class MeshObservability:
    """The mesh-wide settings a workload's metrics and access logs are compiled from."""

    kinds: Mapping[str, str] = field(default_factory=lambda: dict(BUILTIN_PROVIDERS))  # provider name -> kind
    file_logs: Mapping[str, AccessLogSink] = field(default_factory=dict)  # envoyFileAccessLog providers by name
    default_metrics: tuple[str, ...] = DEFAULT_METRICS_PROVIDERS
    default_access_logging: tuple[str, ...] = ()
    mesh_access_log: AccessLogSink | None = None  # accessLogFile: in force where no Telemetry configures logs

    def resolve(self, name: str) -> str | None:
        """The provider `name` refers to: pilot's fetchProvider matches names case-insensitively."""
        folded = name.casefold()
        return next((known for known in self.kinds if known.casefold() == folded), None)


def provider_references(entry: Fields, mesh: MeshObservability, fix: str) -> list[tuple[str, str]]:
    """A Telemetry entry's `providers[]`: each one's path and the provider it names; Rejected for an unknown one."""
    found = []
    for path, item in entry.items("providers"):
        reference = Fields(item, path)
        name = reference.string("name")
        reference.done()
        resolved = mesh.resolve(name)
        if resolved is None:
            raise Rejected(f"{path}.name", "UnknownProvider",
                           f"provider {name!r} is not in the MeshConfig's extensionProviders", fix)
        found.append((path, resolved))
    return found


def read_observability(spec: Mapping[str, Any], problems: list[Problem],
                       notices: list[Problem]) -> MeshObservability:
    """`spec` has its keys in their JSON names already; a broken part is reported and left at its default."""
    fields = Fields(spec, "spec")
    mesh_format = _attempt(lambda: _mesh_format(fields, notices), AccessLogSink(), problems)
    path = _attempt(lambda: fields.string("accessLogFile", "", allow_empty=True), "", problems)
    kinds = dict(BUILTIN_PROVIDERS)
    file_logs = {BUILTIN_ENVOY: _with_path(mesh_format, DEV_STDOUT)}
    entries = spec.get("extensionProviders")
    for index, entry in enumerate(entries if isinstance(entries, list) else ()):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not entry.get("name"):
            continue  # read_mesh reports it
        name, kind = str(entry["name"]), provider_kind(entry)
        kinds[name] = kind or "unknown"
        file_logs.pop(name, None)
        if kind == FILE_ACCESS_LOG:
            where = join(join("spec.extensionProviders", index), FILE_ACCESS_LOG)
            try:
                file_logs[name] = _file_log(entry[FILE_ACCESS_LOG], where, name, mesh_format, notices)
            except ConfigError as error:
                problems.append(_problem(error))
    defaults = fields.mapping("defaultProviders") if isinstance(spec.get("defaultProviders"), Mapping) else None
    default_metrics = DEFAULT_METRICS_PROVIDERS
    default_logs: tuple[str, ...] = ()
    if defaults is not None:
        if defaults.has("metrics"):
            default_metrics = _attempt(lambda: _names(defaults, "metrics"), DEFAULT_METRICS_PROVIDERS, problems)
        default_logs = _attempt(lambda: _names(defaults, "accessLogging"), (), problems)
    observability = MeshObservability(kinds, file_logs, default_metrics, default_logs,
                                      _with_path(mesh_format, path) if path else None)
    for key, names in (("metrics", default_metrics if defaults is not None and defaults.has("metrics") else ()),
                       ("accessLogging", default_logs)):
        for index, name in enumerate(names):
            if observability.resolve(name) is None:
                problems.append(Problem(MESH_RESOURCE, f"spec.defaultProviders.{key}[{index}]", "UnknownProvider",
                                        f"provider {name!r} is not in the MeshConfig's extensionProviders nor one "
                                        f"of Istio's built-in ones ({', '.join(BUILTIN_PROVIDERS)})",
                                        "add it to extensionProviders or name a known provider"))
    return observability


def _problem(error: ConfigError) -> Problem:
    return Problem(MESH_RESOURCE, error.field, "InvalidMeshConfig", error.problem, error.fix)


def _attempt(read: Any, default: Any, problems: list[Problem]) -> Any:
    try:
        return read()
    except ConfigError as error:
        problems.append(_problem(error))
        return default


def _names(fields: Fields, key: str) -> tuple[str, ...]:
    names = []
    for path, name in fields.items(key):
        if not isinstance(name, str) or not name:
            raise ConfigError(path, f"must be a provider name, got {name!r}", "write the name of an extension provider")
        names.append(name)
    return tuple(names)


def _with_path(sink: AccessLogSink, path: str) -> AccessLogSink:
    return AccessLogSink(path=path, encoding=sink.encoding, format=sink.format, labels=sink.labels)


def text_format(text: str, path: str, notices: list[Problem]) -> str | None:
    """fileAccessLogFormat: a format gets a final newline if it lacks one ("Istio will insert a newline ('\\n')
    on all formats"); empty means Istio's default format (None), and so does one with a command operator the
    sidecar cannot write (reported)."""
    if not text or not _supported(text, path, "the log is written in Istio's default format instead", notices):
        return None
    return text if text.endswith("\n") else text + "\n"


def _supported(text: str, path: str, instead: str, notices: list[Problem]) -> bool:
    try:
        check_format(text)
    except FormatError as error:
        notices.append(Problem(MESH_RESOURCE, path, "UnsupportedFormat", f"{error}; {instead}", error.fix))
        return False
    return True


def _mesh_format(fields: Fields, notices: list[Problem]) -> AccessLogSink:
    """FileAccessLogFromMeshConfig's encoding and format (the path is filled in by the caller)."""
    encoding = fields.choice("accessLogEncoding", ACCESS_LOG_ENCODINGS, "TEXT")
    text = fields.string("accessLogFormat", "", allow_empty=True)
    if encoding == "TEXT":
        return AccessLogSink(encoding="TEXT", format=text_format(text, "spec.accessLogFormat", notices))
    if not text:
        return AccessLogSink(encoding="JSON")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        # Istio logs "error parsing provided json log format, default log format will be used".
        notices.append(Problem(MESH_RESOURCE, "spec.accessLogFormat", "InvalidJSONLogFormat",
                               "is not a JSON object, so Istio's default JSON fields are logged, as Istio does",
                               'write a JSON object of field: operator, e.g. {"code": "%RESPONSE_CODE%"}'))
        return AccessLogSink(encoding="JSON")
    return AccessLogSink(encoding="JSON", labels=_labels(parsed, "spec.accessLogFormat", notices))


def _labels(labels: Mapping[str, Any], path: str, notices: list[Problem]) -> tuple[tuple[str, str], ...]:
    """JSON log fields; a value that is not a string (a number, a nested object) or uses a command operator the
    sidecar cannot write is left out and reported."""
    kept = []
    for name, value in labels.items():
        if isinstance(value, str):
            if _supported(value, join(path, str(name)), "this field is left out", notices):
                kept.append((str(name), value))
        else:
            notices.append(Problem(MESH_RESOURCE, join(path, str(name)), "UnsupportedField",
                                   f"is {value!r}; tracemesh's sidecar logs string fields (command-operator "
                                   f"strings) only, so this field is left out", "write it as a string"))
    return tuple(kept)


def _file_log(body: object, path: str, name: str, mesh_format: AccessLogSink,
              notices: list[Problem]) -> AccessLogSink:
    """telemetryAccessLog for an envoyFileAccessLog provider (fileAccessLogFromTelemetry)."""
    fields = Fields(body, path)
    log_path = fields.string("path", "", allow_empty=True) or DEV_STDOUT
    log_format = fields.mapping("logFormat")
    text = log_format.string("text", None, allow_empty=True)
    labels = log_format.raw("labels")
    log_format.done()
    if fields.boolean("omitEmptyValues", False):
        notices.append(Problem(MESH_RESOURCE, join(path, "omitEmptyValues"), "UnsupportedField",
                               "is true, but tracemesh's sidecar writes every field (\"-\" when empty); accepted, "
                               "not acted on", "remove it"))
    fields.done()
    if text is not None and labels is not None:
        raise ConfigError(join(path, "logFormat"), "sets both text and labels",
                          "set one of them (they are a oneof in Istio's LogFormat)")
    if name == BUILTIN_ENVOY and text is None and labels is None:
        # The built-in provider without a format takes the MeshConfig's accessLogEncoding and accessLogFormat.
        return _with_path(mesh_format, log_path)
    if labels is not None:
        if not isinstance(labels, Mapping):
            raise ConfigError(join(join(path, "logFormat"), "labels"), "must be a mapping",
                              "write it as field: operator string pairs")
        # An empty labels map logs Istio's default JSON fields (buildFileAccessJSONLogFormat).
        return AccessLogSink(path=log_path, encoding="JSON",
                             labels=_labels(labels, join(join(path, "logFormat"), "labels"), notices))
    return AccessLogSink(path=log_path, encoding="TEXT",
                         format=text_format(text or "", join(join(path, "logFormat"), "text"), notices))
