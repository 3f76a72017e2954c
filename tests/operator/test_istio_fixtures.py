"""Istio's own integration-test configuration (tests/fixtures/istio/, verbatim) compiles as istiod compiles it.

The cases are those of istio/istio tests/integration/telemetry/tracing: otelcollector/tracing_test.go
TestProxyTracingOpenTelemetryProvider (its subtest names below) and TestGatewayTracing, and zipkin/main_test.go's
mesh config, which TestZipkinConfigDump and the client/server tracing tests run against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tracemesh_operator.compiler import CompiledTelemetry, compile_telemetry, read_mesh, read_telemetry
from tracemesh_operator.compiler.telemetry import TelemetryRules
from tracemesh_sidecar.config import CustomTag

TRACING = Path(__file__).resolve().parents[1] / "fixtures" / "istio" / "tests" / "integration" / "telemetry" / "tracing"
OTEL = TRACING / "otelcollector"
APP_NAMESPACE = "echo"  # tracing.GetAppNamespace(): the Telemetry is applied there
# setupOtelCredentials: the Secret istiod's OTEL_GRPC_AUTHORIZATION comes from
ISTIOD_ENVIRONMENT = {"OTEL_GRPC_AUTHORIZATION": "Bearer somerandomtoken"}


def mesh_config(test: Path) -> dict[str, Any]:
    mesh: dict[str, Any] = yaml.safe_load((test / "control-plane-values.yaml").read_text())["meshConfig"]
    return mesh


def telemetry_fixture(name: str, namespace: str = APP_NAMESPACE) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((OTEL / "testdata" / name).read_text())
    document["metadata"]["namespace"] = namespace
    return document


def compile_fixture(name: str, environ: dict[str, str] | None = None) -> CompiledTelemetry:
    return compile_telemetry(mesh_config(OTEL), [telemetry_fixture(name)], APP_NAMESPACE, {"app": "server"},
                             ISTIOD_ENVIRONMENT if environ is None else environ)


def test_the_otelcollector_mesh_config_is_accepted_whole() -> None:
    mesh = read_mesh(mesh_config(OTEL), ISTIOD_ENVIRONMENT)
    assert mesh.problems == ()
    assert set(mesh.providers) == {"test-otel", "test-otel-http", "test-otel-res-detectors",
                                   "test-otel-grpc-with-initial-metadata", "test-otel-grpc-auth"}
    # The one thing in it a sidecar cannot do: Dynatrace's resource detector.
    assert [(n.field, n.reason) for n in mesh.notices] == [
        ("spec.extensionProviders[2].opentelemetry.resourceDetectors.dynatrace", "UnsupportedField")]


# (subtest of TestProxyTracingOpenTelemetryProvider, fixture, provider, transport, url, timeout, headers, detectors)
OTEL_CASES: list[tuple[str, str, str, str, str, float, tuple[tuple[str, str], ...], tuple[str, ...]]] = [
    ("grpc exporter", "otel-tracing.yaml", "test-otel", "grpc",
     "grpc://opentelemetry-collector.istio-system.svc.cluster.local:4317", 5.0, (), ()),
    ("http exporter", "otel-tracing-http.yaml", "test-otel-http", "http",
     "http://opentelemetry-collector.istio-system.svc.cluster.local:4318/v1/traces", 10.0,
     (("some-header", "some-value"),), ()),
    ("resource detectors", "otel-tracing-res-detectors.yaml", "test-otel-res-detectors", "grpc",
     "grpc://opentelemetry-collector.istio-system.svc.cluster.local:4317", 5.0, (), ("environment",)),
    ("grpc exporter with initial metadata", "otel-grpc-with-initial-metadata.yaml",
     "test-otel-grpc-with-initial-metadata", "grpc",
     "grpc://opentelemetry-collector.istio-system.svc.cluster.local:4317", 3.0, (("Authentication", "token-xxxxx"),),
     ()),
    ("grpc exporter with auth", "otel-tracing-with-auth.yaml", "test-otel-grpc-auth", "grpc",
     "grpc://opentelemetry-collector.istio-system.svc.cluster.local:5317", 5.0,
     (("Authorization", "Bearer somerandomtoken"),), ()),
]


@pytest.mark.parametrize(("fixture", "name", "transport", "url", "timeout_s", "headers", "detectors"),
                         [c[1:] for c in OTEL_CASES], ids=[c[0] for c in OTEL_CASES])
def test_each_otelcollector_case_compiles_to_its_provider(fixture: str, name: str, transport: str, url: str,
                                                          timeout_s: float, headers: tuple[tuple[str, str], ...],
                                                          detectors: tuple[str, ...]) -> None:
    compiled = compile_fixture(fixture)
    assert compiled.problems == ()
    assert compiled.tracing.client == compiled.tracing.server
    policy = compiled.tracing.client
    assert (policy.provider, policy.sampling_percentage) == (name, 100.0)
    [provider] = compiled.providers
    assert (provider.transport, provider.url, provider.timeout_s) == (transport, url, timeout_s)
    assert (provider.headers, provider.resource_detectors) == (headers, detectors)


def test_the_grpc_exporter_case_tags_provider_and_key1_as_istio_does() -> None:
    # customAttribute "provider=otel and key1=val1": key1 is the formatter %REQ(key1)% of the request's header.
    tags = compile_fixture("otel-tracing.yaml").tracing.client.custom_tags
    assert tags == (CustomTag("key1", "header", "key1", "-"), CustomTag("provider", "literal", "otel"))


def test_each_otelcollector_telemetry_is_fully_honoured() -> None:
    mesh = read_mesh(mesh_config(OTEL), ISTIOD_ENVIRONMENT)
    for path in sorted(p for p in (OTEL / "testdata").glob("*.yaml") if p.name != "echo-gateway.yaml"):
        read = read_telemetry(telemetry_fixture(path.name), mesh)
        assert isinstance(read, TelemetryRules), read
        assert read.notices == (), path.name


def test_without_istiods_secret_the_auth_header_is_empty_and_reported() -> None:
    mesh = read_mesh(mesh_config(OTEL), {})
    assert mesh.providers["test-otel-grpc-auth"].headers == (("Authorization", ""),)
    assert any(n.reason == "EnvironmentVariableMissing" and "OTEL_GRPC_AUTHORIZATION" in n.problem
               for n in mesh.notices)


def test_gateway_tracing_telemetry_compiles_in_the_root_namespace() -> None:
    # TestGatewayTracing applies echo-gateway-tracing.yaml in the system namespace: the mesh default.
    compiled = compile_telemetry(mesh_config(OTEL), [telemetry_fixture("echo-gateway-tracing.yaml", "istio-system")],
                                 APP_NAMESPACE, {"app": "server"}, ISTIOD_ENVIRONMENT)
    assert compiled.tracing.server.provider == "test-otel"
    assert compiled.tracing.server.custom_tags == (CustomTag("provider", "literal", "otel-ingress"),)


def test_the_zipkin_suites_mesh_config_makes_zipkin_the_default_provider() -> None:
    mesh = mesh_config(TRACING / "zipkin")
    compiled = compile_telemetry(mesh, [], APP_NAMESPACE, {"app": "server"})
    assert compiled.problems == () and read_mesh(mesh).notices == ()
    assert compiled.tracing.client.provider == compiled.tracing.server.provider == "zipkin"
    [zipkin] = compiled.providers
    assert zipkin.url == "http://zipkin.istio-system.svc.cluster.local:9411/api/v2/spans"
    # TestZipkinConfigDump: TraceContextOption USE_B3_WITH_W3C_PROPAGATION; and the collector headers.
    assert zipkin.trace_context_option == "USE_B3_WITH_W3C_PROPAGATION" and zipkin.propagates_w3c
    assert zipkin.headers == (("Authorization", "Bearer test-token"), ("X-Custom-Header", "test-value"))
