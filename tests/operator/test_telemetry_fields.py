"""Telemetry fields as Istio's pilot/pkg/model/telemetry.go reads them, and what is reported as not acted on."""

from __future__ import annotations

from typing import Any

import pytest

from tracemesh_operator.compiler import compile_telemetry, read_mesh, read_telemetry
from tracemesh_operator.compiler.telemetry import TelemetryRules
from tracemesh_sidecar.config import CustomTag

MESH: dict[str, Any] = {
    "extensionProviders": [{"name": "zipkin", "zipkin": {"service": "zipkin.istio-system", "port": 9411}},
                           {"name": "otel", "opentelemetry": {"service": "otel.observability", "port": 4317}}],
    "defaultProviders": {"tracing": ["zipkin"]}}
APP = {"app": "reviews"}


def telemetry(namespace: str, *rules: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
            "metadata": {"name": "t", "namespace": namespace, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": dict(spec, tracing=list(rules))}


def read(*rules: dict[str, Any], **spec: Any) -> TelemetryRules:
    result = read_telemetry(telemetry("default", *rules, **spec), read_mesh(MESH))
    assert isinstance(result, TelemetryRules), result
    return result


def notices(rules: TelemetryRules) -> dict[str, str]:
    return {notice.field: notice.reason for notice in rules.notices}


def test_several_providers_the_first_is_used_with_a_warning() -> None:
    # telemetry.go Tracing: "we only support a single provider per mode ... choosing the first".
    rules = read({"providers": [{"name": "otel"}, {"name": "zipkin"}]})
    assert rules.rules[0].provider == "otel"
    assert notices(rules) == {"spec.tracing[0].providers": "FirstProviderUsed"}
    [notice] = rules.notices
    assert "'otel' is used" in notice.problem


def test_enable_istio_tags_and_request_id_sampling_compile_and_inherit_field_by_field() -> None:
    root = telemetry("istio-system", {"enableIstioTags": False})
    namespace = telemetry("default", {"useRequestIdForTraceSampling": False, "match": {"mode": "SERVER"}})
    tracing = compile_telemetry(MESH, [root, namespace], "default", APP).tracing
    assert (tracing.client.enable_istio_tags, tracing.client.use_request_id_for_trace_sampling) == (False, True)
    assert (tracing.server.enable_istio_tags, tracing.server.use_request_id_for_trace_sampling) == (False, False)
    defaults = compile_telemetry(MESH, [], "default", APP).tracing.client
    assert defaults.enable_istio_tags and defaults.use_request_id_for_trace_sampling  # Istio's defaults: on
    assert read({"enableIstioTags": True}).notices == ()


@pytest.mark.parametrize(("formatter", "tag"), [
    ("%REQ(key1)%", CustomTag("t", "header", "key1", "-")),
    ("%REQ(x-user-id)%", CustomTag("t", "header", "x-user-id", "-")),
    ("%ENVIRONMENT(POD_NAME)%", CustomTag("t", "environment", "POD_NAME", "-")),
])
def test_formatter_tags_the_sidecar_can_evaluate_become_header_and_environment_tags(formatter: str,
                                                                                    tag: CustomTag) -> None:
    rules = read({"customTags": {"t": {"formatter": {"value": formatter}}}})
    assert rules.rules[0].custom_tags == (tag,) and rules.notices == ()


@pytest.mark.parametrize("formatter", ["%REQ(key1):10%", "%REQ(a?b)%", "%UPSTREAM_HOST%", "v=%REQ(key1)%",
                                       "%FILTER_STATE(downstream_peer_obj:FIELD:workload)%"])
def test_other_formatters_are_left_out_and_reported(formatter: str) -> None:
    rules = read({"customTags": {"t": {"formatter": {"value": formatter}}, "keep": {"literal": {"value": "v"}}}})
    assert rules.rules[0].custom_tags == (CustomTag("keep", "literal", "v"),)
    assert notices(rules) == {"spec.tracing[0].customTags.t.formatter.value": "UnsupportedField"}


def test_a_formatter_with_another_source_is_rejected() -> None:
    mesh = read_mesh(MESH)
    problem = read_telemetry(telemetry("default", {"customTags": {"t": {"formatter": {"value": "%REQ(a)%"},
                                                                      "literal": {"value": "x"}}}}), mesh)
    assert not isinstance(problem, TelemetryRules)
    assert problem.field == "spec.tracing[0].customTags.t.literal"


def test_waypoint_target_refs_are_accepted_and_reported_and_metrics_and_access_logging_honoured() -> None:
    rules = read({"randomSamplingPercentage": 5}, metrics=[{"providers": [{"name": "prometheus"}]}],
                 accessLogging=[{"providers": [{"name": "envoy"}]}],
                 targetRefs=[{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"},
                             {"kind": "Service", "group": "", "name": "reviews"}])
    assert notices(rules) == {"spec.targetRefs": "UnsupportedField"}
    assert all(notice.fix for notice in rules.notices)
    assert rules.target_gateways == ("gw",)


def test_a_telemetry_targeting_a_gateway_is_honoured() -> None:
    rules = read({"randomSamplingPercentage": 5},
                 targetRefs=[{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}])
    assert rules.notices == ()


def test_a_plain_tracing_telemetry_has_nothing_to_report() -> None:
    assert read({"providers": [{"name": "zipkin"}], "randomSamplingPercentage": 100,
                 "customTags": {"a": {"header": {"name": "x"}}}}).notices == ()
