"""MeshConfig extensionProviders compiled as istiod compiles them (pilot/pkg/networking/core/tracing.go).

The provider cases of Istio's pilot/pkg/networking/core/tracing_test.go, as table tests: each case names
the Go test and case it follows. Istio's fake providers are written here as the YAML a user writes.
"""

from __future__ import annotations

from typing import Any

import pytest

from tracemesh_operator.compiler import Problem, read_mesh
from tracemesh_operator.compiler.mesh import MeshTracing
from tracemesh_sidecar.config import ProviderConfig
from tracemesh_sidecar.config.model import join_path

# fakeOpenTelemetryGrpc / fakeOpenTelemetryHTTP / fakeOpenTelemetryGrpcWithInitialMetadata / fakeZipkin...
OTEL_GRPC = {"service": "otel-collector", "port": 4317, "maxTagLength": 256}
OTEL_HTTP = {"service": "my-o11y-backend", "port": 443, "maxTagLength": 256,
             "http": {"path": "/v1/traces", "timeout": "3s",
                      "headers": [{"name": "custom-header", "value": "custom-value"}]}}
OTEL_GRPC_METADATA = {"service": "tracing.example.com", "port": 8090, "maxTagLength": 256,
                      "grpc": {"initialMetadata": [{"name": "Authentication", "value": "token-xxxxx"}],
                               "timeout": "3s"}}
ZIPKIN = {"service": "zipkin", "port": 9411, "maxTagLength": 256}


def mesh_of(kind: str, body: dict[str, Any], environ: dict[str, str] | None = None, name: str = "p") -> MeshTracing:
    return read_mesh({"extensionProviders": [{"name": name, kind: body}]}, environ or {})


def provider(kind: str, body: dict[str, Any], environ: dict[str, str] | None = None) -> ProviderConfig:
    mesh = mesh_of(kind, body, environ)
    assert mesh.problems == (), mesh.problems
    return mesh.providers["p"]


# (Go test / case name, kind, provider body, expected ProviderConfig fields)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("TestConfigureTracing/basic config (with opentelemetry provider via grpc)", "opentelemetry", OTEL_GRPC,
     {"transport": "grpc", "service": "otel-collector", "port": 4317, "url": "grpc://otel-collector:4317",
      "max_tag_length": 256, "headers": ()}),
    ("TestConfigureTracing/basic config (with opentelemetry provider via http)", "opentelemetry", OTEL_HTTP,
     {"transport": "http", "url": "http://my-o11y-backend:443/v1/traces", "timeout_s": 3.0,
      "headers": (("custom-header", "custom-value"),)}),
    ("TestConfigureTracing/basic config (with opentelemetry provider via grpc with initial metadata)",
     "opentelemetry", OTEL_GRPC_METADATA,
     {"transport": "grpc", "url": "grpc://tracing.example.com:8090", "timeout_s": 3.0,
      "headers": (("Authentication", "token-xxxxx"),)}),
    ("TestConfigureTracing/basic config (with opentelemetry provider with resource detectors)", "opentelemetry",
     {**OTEL_HTTP, "resourceDetectors": {"environment": {}, "dynatrace": {}}},
     {"transport": "http", "resource_detectors": ("environment",)}),
    ("TestConfigureTracing/only telemetry api (with provider)", "zipkin", ZIPKIN,
     {"path": "/api/v2/spans", "enable_64bit_trace_id": False, "url": "http://zipkin:9411/api/v2/spans"}),
    ("TestConfigureTracing/zipkin enable 64bit trace id", "zipkin", {**ZIPKIN, "enable64bitTraceId": True},
     {"enable_64bit_trace_id": True}),
    ("TestConfigureTracing/only telemetry api (with provider): fakeZipkinWithEndpoint", "zipkin",
     {**ZIPKIN, "path": "/custom/path/api/v2/spans"}, {"path": "/custom/path/api/v2/spans"}),
    ("TestZipkinConfig/zipkin config with empty endpoint defaults to /api/v2/spans", "zipkin",
     {**ZIPKIN, "path": ""}, {"path": "/api/v2/spans"}),
    ("TestConfigureTracing/zipkin with B3 only trace context option", "zipkin",
     {**ZIPKIN, "traceContextOption": "USE_B3"}, {"trace_context_option": "USE_B3"}),
    ("TestConfigureTracing/zipkin with dual B3/W3C trace context option", "zipkin",
     {**ZIPKIN, "traceContextOption": "USE_B3_WITH_W3C_PROPAGATION"},
     {"trace_context_option": "USE_B3_WITH_W3C_PROPAGATION"}),
    ("TestZipkinConfigWithHttpService/zipkin with timeout uses HttpService", "zipkin", {**ZIPKIN, "timeout": "10s"},
     {"timeout_s": 10.0}),
    ("TestZipkinConfigWithHttpService/zipkin without timeout and headers (Istio's 5s default)", "zipkin", ZIPKIN,
     {"timeout_s": 5.0, "headers": ()}),
    ("TestZipkinConfigWithHttpService/zipkin with custom headers uses HttpService", "zipkin",
     {**ZIPKIN, "headers": [{"name": "X-Custom-Header", "value": "custom-value"},
                            {"name": "Authorization", "value": "Bearer token123"}]},
     {"headers": (("Authorization", "Bearer token123"), ("X-Custom-Header", "custom-value"))}),
    ("config.proto HttpService: timeout defaults to 3s", "opentelemetry", {**OTEL_GRPC, "http": {"path": "v1/traces"}},
     {"timeout_s": 3.0, "path": "/v1/traces"}),
    ("config.proto max_tag_length: 0 is passed through (Envoy's default applies)", "opentelemetry",
     {**OTEL_GRPC, "maxTagLength": 0}, {"max_tag_length": 0}),
    ("config.proto service: [<Namespace>/]<Hostname>: the hostname is what is dialled", "opentelemetry",
     {**OTEL_GRPC, "service": "observability/otel.observability.svc.cluster.local"},
     {"service": "otel.observability.svc.cluster.local", "url": "grpc://otel.observability.svc.cluster.local:4317"}),
]


@pytest.mark.parametrize(("kind", "body", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_providers_compile_as_istio_compiles_them(kind: str, body: dict[str, Any], expected: dict[str, Any]) -> None:
    compiled = provider(kind, body)
    assert {key: getattr(compiled, key) for key in expected} == expected


# TestGetHeaderValue: a header's value, or the named variable of istiod's (here: the operator's) environment.
@pytest.mark.parametrize(("header", "value"), [
    ({"name": "h", "value": "custom-value"}, "custom-value"),  # custom-value
    ({"name": "h", "envName": "CUSTOM_ENV_NAME"}, "custom-env-value"),  # read-from-env
    ({"name": "h", "envName": "CUSTOM_ENV_NAME1"}, ""),  # read-from-env-not-exists
], ids=["custom-value", "read-from-env", "read-from-env-not-exists"])
def test_header_values_come_from_the_operators_environment(header: dict[str, str], value: str) -> None:
    environ = {"CUSTOM_ENV_NAME": "custom-env-value"}
    for body in ({**OTEL_GRPC, "grpc": {"initialMetadata": [header]}},
                 {**OTEL_GRPC, "http": {"path": "/v1/traces", "headers": [header]}}):
        assert provider("opentelemetry", body, environ).headers == (("h", value),)
    assert provider("zipkin", {**ZIPKIN, "headers": [header]}, environ).headers == (("h", value),)


def test_a_missing_environment_variable_is_reported_with_the_field_and_the_fix() -> None:
    mesh = mesh_of("opentelemetry", {**OTEL_GRPC, "grpc": {"initialMetadata": [{"name": "A", "envName": "NOPE"}]}})
    [notice] = mesh.notices
    assert notice.reason == "EnvironmentVariableMissing"
    assert notice.field == "spec.extensionProviders[0].opentelemetry.grpc.initialMetadata[0].envName"
    assert "NOPE" in notice.problem and "Deployment" in notice.fix


@pytest.mark.parametrize(("path", "joined"), [
    ("v1/traces", "/v1/traces"), ("/v1/traces", "/v1/traces"), ("", "/"), ("api//v1/", "/api/v1/"),
    ("./v1/../traces", "/traces"), ("/api/otlp/traces", "/api/otlp/traces"),
])
def test_paths_join_as_gos_url_join_path(path: str, joined: str) -> None:
    assert join_path(path) == joined
    assert provider("opentelemetry", {**OTEL_GRPC, "http": {"path": path}}).path == joined


def test_snake_case_field_names_read_as_protobufs_json_reader_reads_them() -> None:
    # Istio's own otelcollector test writes `resource_detectors`.
    compiled = provider("opentelemetry", {"service": "otel-collector", "port": 4317,
                                          "resource_detectors": {"environment": {}}, "max_tag_length": 99})
    assert (compiled.resource_detectors, compiled.max_tag_length) == (("environment",), 99)
    assert provider("zipkin", {**ZIPKIN, "enable_64bit_trace_id": True}).enable_64bit_trace_id


# Rejected by Istio (pkg/config/validation/agent/extensionprovider.go, or protobuf's JSON reader).
REJECTED = [
    ("grpc and http", {**OTEL_GRPC, "grpc": {}, "http": {"path": "/v1/traces"}}, "grpc"),
    ("service with two slashes", {**OTEL_GRPC, "service": "a/b/c"}, "service"),
    ("service not a hostname", {**OTEL_GRPC, "service": "otel collector"}, "service"),
    ("namespace not a label", {**OTEL_GRPC, "service": "Bad_NS/otel.ns.svc"}, "service"),
    ("port 0", {**OTEL_GRPC, "port": 0}, "port"),
    ("value and envName", {**OTEL_GRPC, "grpc": {"initialMetadata": [{"name": "a", "value": "b", "envName": "C"}]}},
     "envName"),
    ("both spellings", {**OTEL_GRPC, "maxTagLength": 1, "max_tag_length": 2}, "max_tag_length"),
    ("enrichment not an enum value", {**OTEL_GRPC, "serviceAttributeEnrichment": "BOTH"}, "serviceAttributeEnrichment"),
]


@pytest.mark.parametrize(("body", "field"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_what_istio_rejects_is_rejected_naming_the_field(body: dict[str, Any], field: str) -> None:
    mesh = mesh_of("opentelemetry", body)
    assert mesh.providers == {}
    [problem] = mesh.problems
    assert field in problem.field and problem.fix


def notice_fields(mesh: MeshTracing) -> dict[str, str]:
    return {notice.field: notice.reason for notice in mesh.notices}


def test_accepted_but_not_acted_on_is_reported_and_the_rest_applies() -> None:
    mesh = mesh_of("opentelemetry", {**OTEL_HTTP, "resourceDetectors": {"environment": {}, "dynatrace": {}},
                                     "dynatraceSampler": {"tenant": "abc", "clusterId": 1},
                                     "serviceAttributeEnrichment": "OTEL_SEMANTIC_CONVENTIONS", "colour": "blue"})
    base = "spec.extensionProviders[0].opentelemetry"
    assert notice_fields(mesh) == {f"{base}.resourceDetectors.dynatrace": "UnsupportedField",
                                   f"{base}.dynatraceSampler": "UnsupportedField",
                                   f"{base}.serviceAttributeEnrichment": "UnsupportedField",
                                   f"{base}.colour": "UnknownField"}
    assert mesh.providers["p"].resource_detectors == ("environment",)
    assert mesh_of("opentelemetry", {**OTEL_GRPC, "serviceAttributeEnrichment": "ISTIO_CANONICAL"}).notices == ()


def test_istios_other_provider_kinds_and_mesh_fields_are_accepted_and_reported() -> None:
    mesh = read_mesh({"extensionProviders": [{"name": "dd", "datadog": {"service": "dd.svc", "port": 8126}},
                                             {"name": "envoy", "envoyFileAccessLog": {"path": "/dev/stdout"}}],
                      "defaultProviders": {"tracing": ["a", "b"], "metrics": ["prometheus"]},
                      "accessLogFile": "/dev/stdout", "enableAutoMtls": True,
                      "defaultConfig": {"tracing": {"zipkin": {"address": "z:9411"}}}})
    # The metrics and file access log providers, defaultProviders.metrics and accessLogFile are acted on.
    assert notice_fields(mesh) == {
        "spec.extensionProviders[0].datadog": "UnsupportedProvider",
        "spec.defaultProviders.tracing": "FirstProviderUsed",
        "spec.enableAutoMtls": "UnsupportedField",
        "spec.defaultConfig.tracing.zipkin": "UnsupportedField",
    }
    assert all(isinstance(notice, Problem) and notice.fix for notice in mesh.notices)


def test_the_first_default_provider_is_used_as_istio_does() -> None:
    mesh = read_mesh({"extensionProviders": [{"name": "a", "zipkin": ZIPKIN}, {"name": "b", "zipkin": ZIPKIN}],
                      "defaultProviders": {"tracing": ["b", "a"]}})
    assert mesh.default_provider == "b" and mesh.problems == ()


@pytest.mark.parametrize("entry", [{"name": "x"}, {"name": "x", "zipkn": {"service": "z", "port": 1}},
                                   {"name": "x", "zipkin": ZIPKIN, "datadog": {"service": "d", "port": 1}}],
                         ids=["no kind", "a misspelt kind", "two kinds"])
def test_a_provider_without_exactly_one_known_kind_is_rejected_as_istio_rejects_it(entry: dict[str, Any]) -> None:
    # validateExtensionProvider: "unsupported provider" (protobuf's JSON reader drops the unknown key first).
    mesh = read_mesh({"extensionProviders": [entry]})
    [problem] = mesh.problems
    assert (problem.field, problem.reason) == ("spec.extensionProviders[0]", "InvalidMeshConfig")
    assert mesh.providers == {} and mesh.foreign == {}


def test_the_proxy_lifecycle_fields_are_acted_on_and_other_proxy_metadata_is_reported() -> None:
    """Injection reads terminationDrainDuration, holdApplicationUntilProxyStarts and proxyMetadata (every entry a
    variable of the proxy); the proxy reads two of those variables, so the others are reported."""
    mesh = read_mesh({"defaultConfig": {"terminationDrainDuration": "10s", "holdApplicationUntilProxyStarts": True,
                                        "proxyMetadata": {"EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "true",
                                                          "MINIMUM_DRAIN_DURATION": "2s",
                                                          "ISTIO_META_DNS_CAPTURE": "true"},
                                        "concurrency": 2}})
    assert notice_fields(mesh) == {"spec.defaultConfig.proxyMetadata.ISTIO_META_DNS_CAPTURE": "UnsupportedField",
                                   "spec.defaultConfig.concurrency": "UnsupportedField"}
