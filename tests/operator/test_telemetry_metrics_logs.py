"""Telemetry `metrics`/`accessLogging` and MeshConfig `accessLogFile`/`accessLogEncoding`/`accessLogFormat`
compiled into the proxy config (istio/istio pilot/pkg/model/telemetry.go mergeMetrics/mergeLogs,
telemetry_logging.go FileAccessLogFromMeshConfig), and every part not acted on reported by field."""

from __future__ import annotations

from typing import Any

from tracemesh_operator.compiler import CompiledTelemetry, Problem, TelemetryRules, compile_telemetry, read_mesh
from tracemesh_operator.compiler import read_telemetry as read_one
from tracemesh_sidecar.config.observability import AccessLogSink, MetricOverride, MetricsPolicy

APP = {"app": "reviews"}
OFF = MetricsPolicy(enabled=False)


def telemetry(namespace: str, name: str = "t", selector: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    metadata = {"name": name, "namespace": namespace, "creationTimestamp": "2026-01-01T00:00:00Z"}
    return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry", "metadata": metadata,
            "spec": {**spec, **({"selector": {"matchLabels": selector}} if selector else {})}}


def compiled(*telemetries: dict[str, Any], mesh: dict[str, Any] | None = None) -> CompiledTelemetry:
    return compile_telemetry(mesh or {}, list(telemetries), "default", APP)


def notices(body: dict[str, Any], mesh: dict[str, Any] | None = None) -> dict[str, str]:
    read = read_one(body, read_mesh(mesh or {}))
    assert isinstance(read, TelemetryRules), read
    return {notice.field: notice.reason for notice in read.notices}


def test_by_default_istios_metrics_are_on_and_no_access_log_is_written() -> None:
    result = compiled()
    assert result.metrics.client == result.metrics.server == MetricsPolicy()
    assert result.access_logs.client == result.access_logs.server == ()


def test_default_metrics_providers_decide_as_in_istio() -> None:
    none = compiled(mesh={"defaultProviders": {"metrics": []}})
    assert none.metrics.client == none.metrics.server == OFF
    # A Telemetry naming prometheus turns them on again.
    named = compiled(telemetry("default", metrics=[{"providers": [{"name": "prometheus"}]}]),
                     mesh={"defaultProviders": {"metrics": []}})
    assert named.metrics.client == named.metrics.server == MetricsPolicy()


def test_a_namespace_re_enabling_one_metric_re_enables_the_direction_root_disabled() -> None:
    """mergeMetrics: "root namespace disables all, but then enables them by namespace scoped"."""
    root = telemetry("istio-system", metrics=[{"overrides": [{"disabled": True}]}])
    assert compiled(root).metrics.server == OFF
    namespace = telemetry("default", metrics=[{"overrides": [
        {"match": {"metric": "REQUEST_COUNT", "mode": "SERVER"}, "disabled": False}]}])
    result = compiled(root, namespace).metrics
    assert result.client == OFF
    assert result.server == MetricsPolicy(overrides=(MetricOverride(metric="REQUEST_COUNT", disabled=False),))


def test_overrides_merge_per_metric_and_tag_later_wins() -> None:
    body = telemetry("default", metrics=[{"overrides": [
        {"match": {"metric": "REQUEST_COUNT"}, "disabled": True,
         "tagOverrides": {"request_protocol": {"operation": "REMOVE"}, "x": {"value": "request.host"}}},
        {"match": {"metric": "REQUEST_COUNT", "mode": "CLIENT"},
         "tagOverrides": {"x": {"value": "string(destination.port)"}}}]}])
    result = compiled(body).metrics
    assert result.server.overrides == (MetricOverride(metric="REQUEST_COUNT", disabled=True,
                                                      tag_remove=("request_protocol",),
                                                      tag_set=(("x", "request.host"),)),)
    assert result.client.overrides == (MetricOverride(metric="REQUEST_COUNT", disabled=True,
                                                      tag_remove=("request_protocol",),
                                                      tag_set=(("x", "string(destination.port)"),)),)


def test_a_workload_naming_another_provider_takes_prometheus_out_of_scope() -> None:
    body = telemetry("default", metrics=[{"providers": [{"name": "stackdriver"}]}])
    assert compiled(body).metrics.client == compiled(body).metrics.server == OFF
    assert notices(body) == {"spec.metrics[0].providers[0].name": "UnsupportedProvider"}


def test_metrics_fields_not_acted_on_are_reported_by_field() -> None:
    body = telemetry("default", metrics=[{"reportingInterval": "10s", "overrides": [
        {"match": {"customMetric": "my_metric"}, "disabled": True},
        {"match": {"metric": "GRPC_REQUEST_MESSAGES"}, "disabled": True},
        {"tagOverrides": {"odd": {"value": "request.headers['x'].split(',')[0]"}}}]}])
    assert notices(body) == {
        "spec.metrics[0].reportingInterval": "UnsupportedField",
        "spec.metrics[0].overrides[0].match.customMetric": "UnsupportedField",
        "spec.metrics[0].overrides[1].match.metric": "UnsupportedField",
        "spec.metrics[0].overrides[2].tagOverrides.odd.value": "UnsupportedExpression",
    }
    # What is reported is left out; the rest is in force.
    assert compiled(body).metrics.server == MetricsPolicy()


def rejected(body: dict[str, Any], mesh: dict[str, Any] | None = None) -> Problem:
    read = read_one(body, read_mesh(mesh or {}))
    assert isinstance(read, Problem), read
    return read


def test_what_istios_crd_validation_rejects_is_rejected_naming_the_field() -> None:
    upsert = rejected(telemetry("default", metrics=[{"overrides": [{"tagOverrides": {"a": {"operation": "UPSERT"}}}]}]))
    assert upsert.field == "spec.metrics[0].overrides[0].tagOverrides.a.value" and "UPSERT" in upsert.problem
    remove = rejected(telemetry("default", metrics=[{"overrides": [
        {"tagOverrides": {"a": {"operation": "REMOVE", "value": "x"}}}]}]))
    assert remove.field == "spec.metrics[0].overrides[0].tagOverrides.a.value"
    unknown = rejected(telemetry("default", accessLogging=[{"providers": [{"name": "nope"}]}]))
    assert (unknown.field, unknown.reason) == ("spec.accessLogging[0].providers[0].name", "UnknownProvider")
    assert rejected(telemetry("default", metrics=[{"overrides": [{"match": {"metric": "REQUESTS"}}]}])).field == (
        "spec.metrics[0].overrides[0].match.metric")


def test_access_log_file_is_the_legacy_log_of_both_directions_in_its_encoding_and_format() -> None:
    text = compiled(mesh={"accessLogFile": "/dev/stdout", "accessLogFormat": "%REQ(:METHOD)% %RESPONSE_CODE%"})
    assert text.access_logs.client == text.access_logs.server == (
        AccessLogSink(path="/dev/stdout", format="%REQ(:METHOD)% %RESPONSE_CODE%\n"),)
    json = compiled(mesh={"accessLogFile": "/var/log/a.log", "accessLogEncoding": "JSON",
                          "accessLogFormat": '{"code": "%RESPONSE_CODE%", "m": "%REQ(:METHOD)%"}'})
    assert json.access_logs.server == (AccessLogSink(path="/var/log/a.log", encoding="JSON",
                                                     labels=(("code", "%RESPONSE_CODE%"), ("m", "%REQ(:METHOD)%"))),)


def test_a_telemetry_replaces_the_legacy_log_and_the_builtin_envoy_takes_the_mesh_format() -> None:
    mesh = {"accessLogFile": "/var/log/legacy.log", "accessLogEncoding": "JSON"}
    body = telemetry("default", accessLogging=[{"providers": [{"name": "envoy"}], "match": {"mode": "SERVER"}}])
    result = compiled(body, mesh=mesh)
    assert result.access_logs.server == (AccessLogSink(path="/dev/stdout", encoding="JSON"),)
    # No provider for the client side: AccessLogging has no config there, so the legacy setting applies.
    assert result.access_logs.client == (AccessLogSink(path="/var/log/legacy.log", encoding="JSON"),)


def test_mesh_log_formats_the_sidecar_cannot_write_are_reported_and_istios_default_used() -> None:
    mesh = read_mesh({"accessLogFile": "/dev/stdout", "accessLogFormat": "%DYNAMIC_METADATA(istio.mixer:status)%"})
    assert {notice.field: notice.reason for notice in mesh.notices} == {"spec.accessLogFormat": "UnsupportedFormat"}
    assert mesh.observability.mesh_access_log == AccessLogSink(path="/dev/stdout")
    bad_json = read_mesh({"accessLogEncoding": "JSON", "accessLogFormat": "not json"})
    assert [notice.reason for notice in bad_json.notices] == ["InvalidJSONLogFormat"]
    bad_encoding = read_mesh({"accessLogEncoding": "XML"})
    assert [(problem.field, problem.reason) for problem in bad_encoding.problems] == [
        ("spec.accessLogEncoding", "InvalidMeshConfig")]


def test_access_logging_disabled_filtered_and_als_providers() -> None:
    root = telemetry("istio-system", accessLogging=[{"providers": [{"name": "envoy"}]}])
    off = telemetry("default", accessLogging=[{"disabled": True, "match": {"mode": "CLIENT"}}])
    result = compiled(root, off)
    assert (result.access_logs.client, result.access_logs.server) == ((), (AccessLogSink(),))
    als = {"extensionProviders": [{"name": "als", "envoyHttpAls": {"service": "als.svc", "port": 9000}}]}
    body = telemetry("default", accessLogging=[{"providers": [{"name": "als"}]}])
    assert notices(body, als) == {"spec.accessLogging[0].providers[0].name": "UnsupportedProvider"}
    assert compiled(body, mesh=als).access_logs.server == ()
    unfiltered = telemetry("default", accessLogging=[{"filter": {"expression": "response.code >= 400"}}])
    assert notices(unfiltered) == {"spec.accessLogging[0].filter": "FilterWithoutProviders"}
    unsupported = telemetry("default", accessLogging=[{"providers": [{"name": "envoy"}],
                                                       "filter": {"expression": "xds.node.id == 'a'"}}])
    assert notices(unsupported) == {"spec.accessLogging[0].filter.expression": "UnsupportedExpression"}
    assert compiled(unsupported).access_logs.server == (AccessLogSink(),)  # written, unfiltered (reported)
