"""The `metrics` and `accessLogs` sections of the proxy config: Istio's Telemetry metrics and access logging.

The operator compiles Telemetry `metrics`/`accessLogging` and MeshConfig `accessLogFile`/`accessLogEncoding`/
`accessLogFormat` into this shape, per direction (client = outbound, reporter=source; server = inbound,
reporter=destination). Expressions (tagSet values, filters) are checked here with the one parser the
sidecar evaluates them with (telemetry/expressions.py), so a document that parses is one the sidecar honours.

    metrics:
      client: {enabled: true, overrides: [{metric: REQUEST_COUNT, disabled: false,
                                           tagRemove: [request_protocol],
                                           tagSet: {destination_port: "string(destination.port)"}}]}
    accessLogs:
      server: [{path: /dev/stdout, encoding: TEXT, filter: "response.code >= 400"}]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from tracemesh_sidecar.config.fields import ConfigError, Fields, join
from tracemesh_sidecar.telemetry.expressions import ExpressionError, parse_expression
from tracemesh_sidecar.telemetry.logformat import FormatError, check_format

# Telemetry's MetricSelector.IstioMetric values the sidecar reports (the gRPC message counts are not reported).
IstioMetric = Literal["ALL_METRICS", "REQUEST_COUNT", "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE",
                      "TCP_OPENED_CONNECTIONS", "TCP_CLOSED_CONNECTIONS", "TCP_SENT_BYTES", "TCP_RECEIVED_BYTES"]
ISTIO_METRICS: Final[tuple[IstioMetric, ...]] = (
    "ALL_METRICS", "REQUEST_COUNT", "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE",
    "TCP_OPENED_CONNECTIONS", "TCP_CLOSED_CONNECTIONS", "TCP_SENT_BYTES", "TCP_RECEIVED_BYTES")
AccessLogEncoding = Literal["TEXT", "JSON"]
ACCESS_LOG_ENCODINGS: Final[tuple[AccessLogEncoding, ...]] = ("TEXT", "JSON")


@dataclass(frozen=True, slots=True)
class MetricOverride:
    """One Telemetry `overrides[]` entry for one metric (or ALL_METRICS); later entries win per metric."""

    metric: IstioMetric
    disabled: bool | None = None  # None: leaves the metric as earlier overrides set it
    tag_remove: tuple[str, ...] = ()
    tag_set: tuple[tuple[str, str], ...] = ()  # tag -> expression (telemetry/expressions.py), sorted by tag


@dataclass(frozen=True, slots=True)
class MetricsPolicy:
    enabled: bool = True  # False: no istio_* metric from this direction (the prometheus provider not selected)
    overrides: tuple[MetricOverride, ...] = ()


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    client: MetricsPolicy = MetricsPolicy()
    server: MetricsPolicy = MetricsPolicy()


@dataclass(frozen=True, slots=True)
class AccessLogSink:
    """One access log: a file, its encoding and line format, and which requests it logs."""

    path: str = "/dev/stdout"
    encoding: AccessLogEncoding = "TEXT"
    format: str | None = None  # TEXT: an Envoy command-operator string; None: Istio's default format
    labels: tuple[tuple[str, str], ...] = ()  # JSON: field -> operator string; empty: Istio's default JSON fields
    filter: str | None = None  # an expression (telemetry/expressions.py); None logs every request


@dataclass(frozen=True, slots=True)
class AccessLogConfig:
    client: tuple[AccessLogSink, ...] = ()
    server: tuple[AccessLogSink, ...] = ()


# Both directions on, no overrides: Istio's prometheus provider by default.
ISTIO_DEFAULT_METRICS: Final = MetricsConfig()
NO_ACCESS_LOGS: Final = AccessLogConfig()


# ---------------------------------------------------------------------------------------------
# Reading


def parse_metrics(fields: Fields) -> MetricsConfig:
    result = MetricsConfig(client=_parse_metrics_policy(fields.mapping("client")),
                           server=_parse_metrics_policy(fields.mapping("server")))
    fields.done()
    return result


def _parse_metrics_policy(fields: Fields) -> MetricsPolicy:
    overrides = []
    for path, item in fields.items("overrides"):
        entry = Fields(item, path)
        tag_set = entry.string_map("tagSet")
        for tag, expression in tag_set.items():
            check_expression(expression, join(join(path, "tagSet"), tag))
        overrides.append(MetricOverride(
            metric=entry.choice("metric", ISTIO_METRICS, "ALL_METRICS"),
            disabled=entry.boolean("disabled") if entry.has("disabled") else entry.raw("disabled"),
            tag_remove=tuple(_strings(entry, "tagRemove")),
            tag_set=tuple(sorted(tag_set.items())),
        ))
        entry.done()
    result = MetricsPolicy(enabled=fields.boolean("enabled", True), overrides=tuple(overrides))
    fields.done()
    return result


def parse_access_logs(fields: Fields) -> AccessLogConfig:
    result = AccessLogConfig(client=_parse_sinks(fields, "client"), server=_parse_sinks(fields, "server"))
    fields.done()
    return result


def _parse_sinks(fields: Fields, key: str) -> tuple[AccessLogSink, ...]:
    sinks = []
    for path, item in fields.items(key):
        entry = Fields(item, path)
        encoding = entry.choice("encoding", ACCESS_LOG_ENCODINGS, "TEXT")
        text_format = entry.string("format", None)
        labels = entry.string_map("labels")
        if encoding == "TEXT" and labels:
            raise ConfigError(f"{path}.labels", "is set for a TEXT access log",
                              "use format for TEXT, or set encoding: JSON")
        if encoding == "JSON" and text_format is not None:
            raise ConfigError(f"{path}.format", "is set for a JSON access log",
                              "use labels (field: operator string) for JSON, or set encoding: TEXT")
        for key, text in ((f"{path}.format", text_format), *((f"{path}.labels.{k}", v) for k, v in labels.items())):
            if text is not None:
                _check_format(text, key)
        log_filter = entry.string("filter", None)
        if log_filter is not None:
            check_expression(log_filter, f"{path}.filter")
        sinks.append(AccessLogSink(path=entry.string("path", "/dev/stdout"), encoding=encoding, format=text_format,
                                   labels=tuple(labels.items()), filter=log_filter))
        entry.done()
    return tuple(sinks)


def check_expression(text: str, path: str) -> None:
    """A ConfigError naming the field when the expression is not one of the supported forms."""
    try:
        parse_expression(text)
    except ExpressionError as error:
        raise ConfigError(path, f"{text!r} is not supported: {error}", error.fix) from None


def _check_format(text: str, path: str) -> None:
    try:
        check_format(text)
    except FormatError as error:
        raise ConfigError(path, str(error), error.fix) from None


def _strings(fields: Fields, key: str) -> list[str]:
    values = []
    for path, item in fields.items(key):
        if not isinstance(item, str) or not item:
            raise ConfigError(path, f"must be a tag name, got {item!r}", "write a label name like request_protocol")
        values.append(item)
    return values


# ---------------------------------------------------------------------------------------------
# Writing


def dump_metrics(metrics: MetricsConfig) -> dict[str, Any]:
    return {"client": _dump_metrics_policy(metrics.client), "server": _dump_metrics_policy(metrics.server)}


def _dump_metrics_policy(policy: MetricsPolicy) -> dict[str, Any]:
    overrides = []
    for override in policy.overrides:
        entry: dict[str, Any] = {"metric": override.metric}
        if override.disabled is not None:
            entry["disabled"] = override.disabled
        if override.tag_remove:
            entry["tagRemove"] = list(override.tag_remove)
        if override.tag_set:
            entry["tagSet"] = dict(override.tag_set)
        overrides.append(entry)
    return {"enabled": policy.enabled, "overrides": overrides}


def dump_access_logs(access_logs: AccessLogConfig) -> dict[str, Any]:
    return {"client": [_dump_sink(sink) for sink in access_logs.client],
            "server": [_dump_sink(sink) for sink in access_logs.server]}


def _dump_sink(sink: AccessLogSink) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": sink.path, "encoding": sink.encoding}
    if sink.format is not None:
        entry["format"] = sink.format
    if sink.labels:
        entry["labels"] = dict(sink.labels)
    if sink.filter is not None:
        entry["filter"] = sink.filter
    return entry
