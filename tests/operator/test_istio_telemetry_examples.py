"""Istio's own Telemetry documents about metrics and access logs (tests/fixtures/istio/, verbatim) compile as
istiod merges them, or say which field is not honoured: none is accepted as valid while ignored.

The documents: every example of istio/api telemetry/v1alpha1/telemetry.proto, the Telemetry resources of istio/istio
tests/integration/telemetry/api (accesslogs_test.go, stats additional labels) with that suite's mesh config, and
samples/open-telemetry/loki. The access-log merge cases are istio/istio pilot/pkg/model/telemetry_logging_test.go
TestAccessLoggingWithFilter's, by their names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tracemesh_operator.compiler import CompiledTelemetry, TelemetryRules, compile_telemetry, read_mesh, read_telemetry
from tracemesh_sidecar.config.observability import ISTIO_METRICS, AccessLogSink, MetricOverride, MetricsPolicy

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "istio"
EXAMPLES = FIXTURES / "api" / "telemetry" / "telemetry-examples.yaml"
API_TESTS = FIXTURES / "tests" / "integration" / "telemetry" / "api"
# The proto examples name these tracing providers; nothing else is needed (prometheus and envoy are built in).
EXAMPLES_MESH = {"extensionProviders": [
    {"name": "zipkin", "zipkin": {"service": "zipkin.istio-system.svc.cluster.local", "port": 9411}},
    {"name": "zipkin-alternate", "zipkin": {"service": "zipkin-alt.istio-system.svc.cluster.local", "port": 9411}}]}
STDOUT = AccessLogSink(path="/dev/stdout")
HTTP_METRICS = ("REQUEST_COUNT", "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE")


def examples() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(EXAMPLES.read_text()))


def example(key: str) -> dict[str, Any]:
    """The example `namespace/name/section` (the mesh-default examples are told apart by their section)."""
    namespace, name, section = key.split("/")
    return next(document for document in examples() if document["metadata"] == {"name": name, "namespace": namespace}
                and section in document["spec"])


def compile_examples(*keys: str, namespace: str = "foo", labels: dict[str, str] | None = None) -> CompiledTelemetry:
    chosen = [example(key) for key in keys]
    compiled = compile_telemetry(EXAMPLES_MESH, chosen, namespace, labels or {"app": "foo"})
    assert compiled.problems == ()
    return compiled


def test_every_proto_example_is_in_force_and_fully_honoured() -> None:
    mesh = read_mesh(EXAMPLES_MESH)
    assert len(examples()) == 11
    for document in examples():
        read = read_telemetry(document, mesh)
        assert isinstance(read, TelemetryRules) and read.notices == (), (document, read)


def test_disable_server_side_metrics_for_the_mesh() -> None:
    metrics = compile_examples("istio-system/mesh-default/metrics").metrics
    assert (metrics.client.enabled, metrics.server.enabled) == (True, False)


def test_add_dimensions_to_all_metrics_of_a_namespace() -> None:
    metrics = compile_examples("foo/namespace-metrics/metrics").metrics
    tags = (("request_host", "request.host"), ("request_method", "request.method"))
    for policy in (metrics.client, metrics.server):
        assert policy.overrides == tuple(MetricOverride(metric=metric, tag_set=tags)
                                         for metric in sorted(ISTIO_METRICS) if metric != "ALL_METRICS")


def test_remove_response_code_from_one_workloads_http_metrics() -> None:
    bar = compile_examples("foo/remove-response-code/metrics", labels={"service.istio.io/canonical-name": "bar"})
    for policy in (bar.metrics.client, bar.metrics.server):
        assert policy == MetricsPolicy(overrides=tuple(
            MetricOverride(metric=metric, tag_remove=("response_code",)) for metric in sorted(HTTP_METRICS)))
    other = compile_examples("foo/remove-response-code/metrics", labels={"service.istio.io/canonical-name": "baz"})
    assert other.metrics.client == other.metrics.server == MetricsPolicy()


def test_enable_access_logging_for_the_mesh_and_disable_it_for_a_namespace() -> None:
    mesh_wide = compile_examples("istio-system/mesh-default/accessLogging", namespace="bar")
    assert mesh_wide.access_logs.client == mesh_wide.access_logs.server == (STDOUT,)
    foo = compile_examples("istio-system/mesh-default/accessLogging", "foo/namespace-no-log/accessLogging")
    assert foo.access_logs.client == foo.access_logs.server == ()


def api_suite_mesh() -> dict[str, Any]:
    mesh: dict[str, Any] = yaml.safe_load((API_TESTS / "control-plane-values.yaml").read_text())["meshConfig"]
    return mesh


def api_fixture(relative: str, namespace: str = "echo") -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((API_TESTS / "testdata" / relative).read_text())
    document["metadata"]["namespace"] = namespace  # as the test applies it, in the apps' namespace
    return document


@pytest.mark.parametrize(("fixture", "client", "server"), [
    ("mode-client.yaml", (STDOUT,), ()),
    ("mode-server.yaml", (), (STDOUT,)),
    ("mode-clientserver.yaml", (STDOUT,), (STDOUT,)),
])
def test_accesslogs_test_modes(fixture: str, client: tuple[AccessLogSink, ...],
                               server: tuple[AccessLogSink, ...]) -> None:
    compiled = compile_telemetry(api_suite_mesh(), [api_fixture(f"accesslog/{fixture}")], "echo", {"app": "a"})
    assert compiled.problems == ()
    assert (compiled.access_logs.client, compiled.access_logs.server) == (client, server)


def test_accesslogs_test_filter() -> None:
    compiled = compile_telemetry(api_suite_mesh(), [api_fixture("accesslog/filter.yaml")], "echo", {"app": "a"})
    filtered = AccessLogSink(path="/dev/stdout", filter="request.path == '/filter-test'")
    assert compiled.access_logs.client == compiled.access_logs.server == (filtered,)


def test_without_a_telemetry_the_suites_empty_access_log_file_logs_nothing() -> None:
    compiled = compile_telemetry(api_suite_mesh(), [], "echo", {"app": "a"})
    assert compiled.access_logs.client == compiled.access_logs.server == ()


def test_the_filter_state_log_provider_is_written_or_its_format_reported() -> None:
    mesh = read_mesh(api_suite_mesh())
    compiled = compile_telemetry(api_suite_mesh(), [api_fixture("accesslog/enable-filter-state-log.yaml")], "echo",
                                 {"app": "a"})
    [sink] = compiled.access_logs.server
    assert sink.path == "/dev/stdout" and compiled.access_logs.client == (sink,)
    notices = {notice.field: notice.reason for notice in mesh.notices}
    text_field = "spec.extensionProviders[0].envoyFileAccessLog.logFormat.text"
    if sink.format is None:  # an operator of it the sidecar cannot write: Istio's default format, reported
        assert notices.get(text_field) == "UnsupportedFormat"
    else:
        assert sink.format.startswith("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %FILTER_STATE(upstream_peer)%")
        assert text_field not in notices


def test_stats_additional_labels_from_peer_metadata() -> None:
    compiled = compile_telemetry(api_suite_mesh(), [api_fixture("additional-labels.yaml")], "echo", {"app": "a"})
    upstream = (("upstream_custom_label", "filter_state.upstream_peer.labels['custom-label']"),)
    downstream = (("downstream_custom_label", "filter_state.downstream_peer.labels['custom-label']"),)
    assert {override.tag_set for override in compiled.metrics.client.overrides} == {upstream}
    assert {override.tag_set for override in compiled.metrics.server.overrides} == {downstream}


def test_the_loki_samples_otel_access_log_is_accepted_and_reported_not_written() -> None:
    mesh = {"extensionProviders": [{"name": "otel", "envoyOtelAls": {
        "service": "opentelemetry-collector.observability.svc.cluster.local", "port": 4317}}]}
    document = yaml.safe_load((FIXTURES / "samples/open-telemetry/loki/telemetry.yaml").read_text())
    read = read_telemetry(document, read_mesh(mesh))
    assert isinstance(read, TelemetryRules)
    assert [(notice.field, notice.reason) for notice in read.notices] == [
        ("spec.accessLogging[0].providers[0].name", "UnsupportedProvider")]
    compiled = compile_telemetry(mesh, [document], "default", {"app": "a"})
    assert compiled.access_logs.client == compiled.access_logs.server == ()


# TestAccessLoggingWithFilter: the mesh's `envoy-json` provider (labels: Istio's default JSON), defaults [envoy].
ENVOY_JSON_MESH = {"defaultProviders": {"accessLogging": ["envoy"]},
                   "extensionProviders": [{"name": "envoy-json", "envoyFileAccessLog": {
                       "path": "/dev/stdout", "logFormat": {"labels": {}}}}]}


def with_filter(expression: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"providers": [{"name": "envoy-json"}]}
    if expression:
        entry["filter"] = {"expression": expression}
    return entry


def telemetry(namespace: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
            "metadata": {"name": "t", "namespace": namespace}, "spec": {"accessLogging": list(entries)}}


CODE_400 = telemetry("default", with_filter("response.code >= 400"))
CODE_500 = telemetry("default", with_filter("response.code >= 500"))


@pytest.mark.parametrize(("telemetries", "expected"), [
    ([CODE_400], "response.code >= 400"),
    ([{**CODE_400, "metadata": {"name": "t", "namespace": "istio-system"}}, CODE_500], "response.code >= 500"),
    ([telemetry("default", with_filter("response.code >= 500"), with_filter("response.code >= 400"))],
     "response.code >= 400"),
    ([telemetry("default", with_filter("response.code >= 500"), with_filter())], None),
    ([telemetry("default", {**with_filter("response.code >= 500"), "match": {"mode": "CLIENT"}},
                {**with_filter("response.code >= 400"), "match": {"mode": "SERVER"}})], "response.code >= 500"),
], ids=["filter", "namespace-filter", "multi-accesslogging", "multi-accesslogging-nil", "server-and-client-different"])
def test_access_logging_with_filter(telemetries: list[dict[str, Any]], expected: str | None) -> None:
    compiled = compile_telemetry(ENVOY_JSON_MESH, telemetries, "default", {"app": "test"})
    assert compiled.problems == ()
    # The test reads the outbound (client) listener's config: the envoy-json log, filtered.
    assert compiled.access_logs.client == (AccessLogSink(path="/dev/stdout", encoding="JSON", filter=expected),)
