"""The Telemetry compiler: hierarchy, field-by-field override, match.mode, providers, conflicts."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tracemesh_operator.compiler import CompiledTelemetry, compile_telemetry
from tracemesh_sidecar.config import CustomTag, TracingPolicy

ZIPKIN = {"name": "zipkin", "zipkin": {"service": "zipkin.istio-system.svc.cluster.local", "port": 9411}}
OTEL = {"name": "otel", "opentelemetry": {"service": "otel.observability.svc.cluster.local", "port": 4318,
                                          "http": {"path": "/v1/traces"}}}
DATADOG = {"name": "dd", "datadog": {"service": "datadog-agent.dd.svc.cluster.local", "port": 8126}}
MESH: dict[str, Any] = {"extensionProviders": [ZIPKIN, OTEL, DATADOG], "defaultProviders": {"tracing": ["zipkin"]}}
APP = {"app": "reviews", "version": "v1"}


def telemetry(namespace: str, name: str, *rules: dict[str, Any], created: str = "2026-01-01T00:00:00Z",
              **spec: Any) -> dict[str, Any]:
    if rules:
        spec["tracing"] = list(rules)
    return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created}, "spec": spec}


def root(*rules: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return telemetry("istio-system", "mesh-default", *rules, **spec)


def ns(*rules: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return telemetry("default", "namespace-wide", *rules, **spec)


def workload(*rules: dict[str, Any], labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    selector = {"matchLabels": {"app": "reviews"} if labels is None else labels}
    return telemetry("default", "reviews-only", *rules, selector=selector, **spec)


def sampling(value: float, mode: str | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"randomSamplingPercentage": value}
    if mode:
        rule["match"] = {"mode": mode}
    return rule


def compile_for(telemetries: list[dict[str, Any]], mesh: dict[str, Any] | None = None, namespace: str = "default",
                labels: dict[str, str] | None = None) -> CompiledTelemetry:
    return compile_telemetry(MESH if mesh is None else mesh, telemetries, namespace, APP if labels is None else labels)


# (case, telemetries, namespace, labels, client sampling, server sampling)
SAMPLING_CASES: list[tuple[str, list[dict[str, Any]], str, dict[str, str], float, float]] = [
    ("nothing: Istio's default 1%", [], "default", APP, 1.0, 1.0),
    ("root applies mesh-wide", [root(sampling(100))], "default", APP, 100.0, 100.0),
    ("namespace overrides root", [root(sampling(100)), ns(sampling(50))], "default", APP, 50.0, 50.0),
    ("another namespace's Telemetry does not apply",
     [root(sampling(100)), telemetry("other", "x", sampling(7))], "default", APP, 100.0, 100.0),
    ("workload overrides namespace", [root(sampling(100)), ns(sampling(50)), workload(sampling(10))],
     "default", APP, 10.0, 10.0),
    ("a selector that does not match leaves the namespace level",
     [ns(sampling(50)), workload(sampling(10), labels={"app": "ratings"})], "default", APP, 50.0, 50.0),
    ("a selector needs every label", [ns(sampling(50)), workload(sampling(10), labels={"app": "reviews", "v": "2"})],
     "default", APP, 50.0, 50.0),
    ("an empty matchLabels is namespace-wide, as in Istio",
     [root(sampling(100)), workload(sampling(10), labels={})], "default", APP, 10.0, 10.0),
    ("an empty selector in the root namespace is the mesh default",
     [telemetry("istio-system", "mesh-default", sampling(30), selector={})], "default", APP, 30.0, 30.0),
    ("an empty matchLabels in the root namespace is the mesh default",
     [telemetry("istio-system", "mesh-default", sampling(30), selector={"matchLabels": {}}),
      ns(sampling(50, "SERVER"))],
     "default", APP, 30.0, 50.0),
    ("a root-namespace selector applies only in the root namespace",
     [telemetry("istio-system", "sel", sampling(3), selector={"matchLabels": {"app": "reviews"}})],
     "default", APP, 1.0, 1.0),
    ("a root-namespace selector applies to root-namespace workloads",
     [root(sampling(100)), telemetry("istio-system", "sel", sampling(3), selector={"matchLabels": {"app": "reviews"}})],
     "istio-system", APP, 3.0, 3.0),
    ("a workload in the root namespace gets the root Telemetry once", [root(sampling(100))], "istio-system", APP,
     100.0, 100.0),
    ("match CLIENT: outbound only", [root(sampling(100)), ns(sampling(20, "CLIENT"))], "default", APP, 20.0, 100.0),
    ("match SERVER: inbound only", [root(sampling(100)), ns(sampling(20, "SERVER"))], "default", APP, 100.0, 20.0),
    ("match CLIENT_AND_SERVER: both", [ns(sampling(20, "CLIENT_AND_SERVER"))], "default", APP, 20.0, 20.0),
    ("rules of one Telemetry apply in order", [ns(sampling(10), sampling(30, "SERVER"))], "default", APP, 10.0, 30.0),
    ("a rule without the field inherits it", [root(sampling(100)), ns({"disableSpanReporting": True})],
     "default", APP, 100.0, 100.0),
    ("targetRef Telemetry is for gateways, not sidecars",
     [root(sampling(100)), telemetry("default", "gw", sampling(5), targetRefs=[{"kind": "Gateway", "name": "gw"}])],
     "default", APP, 100.0, 100.0),
    ("sampling 0 is a value, not unset", [root(sampling(100)), ns(sampling(0))], "default", APP, 0.0, 0.0),
]


@pytest.mark.parametrize(("telemetries", "namespace", "labels", "client", "server"),
                         [case[1:] for case in SAMPLING_CASES], ids=[case[0] for case in SAMPLING_CASES])
def test_sampling_hierarchy(telemetries: list[dict[str, Any]], namespace: str, labels: dict[str, str],
                            client: float, server: float) -> None:
    compiled = compile_for(telemetries, namespace=namespace, labels=labels)
    assert compiled.problems == ()
    assert compiled.tracing.client.sampling_percentage == client
    assert compiled.tracing.server.sampling_percentage == server


def test_mesh_default_sampling_applies_where_no_telemetry_sets_it() -> None:
    mesh = dict(MESH, defaultConfig={"tracing": {"sampling": 5}})
    assert compile_for([], mesh).tracing.client.sampling_percentage == 5.0
    assert compile_for([ns(sampling(60))], mesh).tracing.client.sampling_percentage == 60.0


def test_every_field_overrides_field_by_field() -> None:
    compiled = compile_for([
        root({"providers": [{"name": "otel"}], "randomSamplingPercentage": 100, "disableSpanReporting": True}),
        ns({"disableSpanReporting": False, "disableContextPropagation": True}),
        workload({"randomSamplingPercentage": 25}),
    ])
    expected = TracingPolicy(provider="otel", sampling_percentage=25.0, disable_span_reporting=False,
                             disable_context_propagation=True)
    assert compiled.tracing.client == compiled.tracing.server == expected
    assert [p.name for p in compiled.providers] == ["otel"]


def test_custom_tags_replace_the_parents_whole() -> None:
    root_tags = {"cluster": {"literal": {"value": "east"}}, "pod": {"environment": {"name": "POD_NAME"}}}
    ns_tags = {"user": {"header": {"name": "x-user", "defaultValue": "anonymous"}}}
    inherited = compile_for([root({"customTags": root_tags}), ns(sampling(50))])
    assert inherited.tracing.client.custom_tags == (
        CustomTag("cluster", "literal", "east"), CustomTag("pod", "environment", "POD_NAME"))
    replaced = compile_for([root({"customTags": root_tags}), ns({"customTags": ns_tags})])
    assert replaced.tracing.server.custom_tags == (CustomTag("user", "header", "x-user", "anonymous"),)
    emptied = compile_for([root({"customTags": root_tags}), ns({"customTags": {}})])
    assert emptied.tracing.client.custom_tags == ()


def test_providers_resolve_against_extension_providers_else_the_default() -> None:
    default = compile_for([])
    assert default.tracing.client.provider == "zipkin"
    assert [p.url for p in default.providers] == ["http://zipkin.istio-system.svc.cluster.local:9411/api/v2/spans"]
    split = compile_for([ns({"providers": [{"name": "otel"}], "match": {"mode": "SERVER"}})])
    assert (split.tracing.client.provider, split.tracing.server.provider) == ("zipkin", "otel")
    assert [p.name for p in split.providers] == ["zipkin", "otel"]
    assert split.providers[1].kind == "opentelemetry" and split.providers[1].path == "/v1/traces"


def test_no_provider_anywhere_reports_nowhere() -> None:
    compiled = compile_for([root(sampling(100))], mesh={"extensionProviders": [ZIPKIN]})
    assert compiled.tracing.client.provider is None and compiled.providers == () and compiled.problems == ()


def test_enable_tracing_false_switches_both_directions_off() -> None:
    compiled = compile_for([root({"providers": [{"name": "zipkin"}], "randomSamplingPercentage": 100})],
                           mesh=dict(MESH, enableTracing=False))
    assert compiled.tracing.client == compiled.tracing.server == TracingPolicy(enabled=False, provider=None)
    assert compiled.providers == ()


def test_root_namespace_follows_the_mesh_config() -> None:
    mesh = dict(MESH, rootNamespace="mesh-root")
    assert compile_for([root(sampling(100))], mesh).tracing.client.sampling_percentage == 1.0
    moved = telemetry("mesh-root", "mesh-default", sampling(100))
    assert compile_for([moved], mesh).tracing.client.sampling_percentage == 100.0


def _only_problem(compiled: CompiledTelemetry) -> Any:
    assert len(compiled.problems) == 1, compiled.problems
    return compiled.problems[0]


# (case, the broken Telemetry, reason, field, words the message must contain)
REJECTED = [
    ("unknown provider", ns({"providers": [{"name": "jaegr"}]}), "UnknownProvider",
     "spec.tracing[0].providers[0].name", ["'jaegr'", "use one of: otel, zipkin"]),
    ("a provider tracemesh cannot export to", ns({"providers": [{"name": "dd"}]}), "UnknownProvider",
     "spec.tracing[0].providers[0].name", ["datadog"]),
    ("an empty provider name", ns({"providers": [{"name": ""}]}), "InvalidTelemetry",
     "spec.tracing[0].providers[0].name", ["empty"]),
    ("sampling above 100", ns(sampling(150)), "SamplingOutOfRange", "spec.tracing[0].randomSamplingPercentage",
     ["150", "0 to 100"]),
    ("sampling below 0", ns(sampling(-1)), "SamplingOutOfRange", "spec.tracing[0].randomSamplingPercentage", ["-1"]),
    ("sampling not a number", ns({"randomSamplingPercentage": "all"}), "InvalidTelemetry",
     "spec.tracing[0].randomSamplingPercentage", ["number"]),
    ("selector with targetRefs", ns(sampling(10), selector={"matchLabels": {"app": "reviews"}},
                                    targetRefs=[{"kind": "Gateway", "name": "gw"}]),
     "SelectorWithTargetRef", "spec.targetRefs", ["selector"]),
    ("selector with targetRef", ns(sampling(10), selector={"matchLabels": {"app": "reviews"}},
                                   targetRef={"kind": "Gateway", "name": "gw"}),
     "SelectorWithTargetRef", "spec.targetRef", ["selector"]),
    ("an unknown match mode", ns({"match": {"mode": "INBOUND"}}), "InvalidTelemetry", "spec.tracing[0].match.mode",
     ["CLIENT_AND_SERVER"]),
    ("a custom tag with two sources", ns({"customTags": {"t": {"literal": {"value": "a"}, "header": {"name": "h"}}}}),
     "InvalidTelemetry", "spec.tracing[0].customTags.t", ["exactly one"]),
    ("a misspelt tracing field", ns({"randomSamplingPercent": 10}), "InvalidTelemetry",
     "spec.tracing[0].randomSamplingPercent", ["not a known field"]),
    ("disableSpanReporting not a boolean", ns({"disableSpanReporting": "yes"}), "InvalidTelemetry",
     "spec.tracing[0].disableSpanReporting", ["true or false"]),
    ("tracing not a list", ns(tracing={"randomSamplingPercentage": 5}), "InvalidTelemetry", "spec.tracing", ["list"]),
]


@pytest.mark.parametrize(("broken", "reason", "field", "words"), [case[1:] for case in REJECTED],
                         ids=[case[0] for case in REJECTED])
def test_a_broken_telemetry_is_reported_and_ignored(broken: dict[str, Any], reason: str, field: str,
                                                    words: list[str]) -> None:
    compiled = compile_for([root(sampling(100)), broken])
    problem = _only_problem(compiled)
    assert (problem.resource, problem.reason, problem.field) == ("Telemetry default/namespace-wide", reason, field)
    for word in words:
        assert word in problem.message
    assert problem.fix
    # The rest compiles: the root's 100% stays in force.
    assert compiled.tracing.client.sampling_percentage == compiled.tracing.server.sampling_percentage == 100.0


def test_two_selectorless_telemetry_in_a_namespace_the_older_applies() -> None:
    older = telemetry("default", "b-older", sampling(40), created="2026-01-01T00:00:00Z")
    newer = telemetry("default", "a-newer", sampling(60), created="2026-01-02T00:00:00Z")
    compiled = compile_for([newer, older])
    assert compiled.tracing.client.sampling_percentage == 40.0
    problem = _only_problem(compiled)
    assert (problem.resource, problem.reason) == ("Telemetry default/a-newer", "ConflictingTelemetry")
    assert "Telemetry default/b-older" in problem.message and "delete one" in problem.fix


def test_two_telemetry_selecting_one_workload_the_older_applies() -> None:
    older = telemetry("default", "by-app", sampling(40), selector={"matchLabels": {"app": "reviews"}},
                      created="2026-01-01T00:00:00Z")
    newer = telemetry("default", "by-version", sampling(60), selector={"matchLabels": {"version": "v1"}},
                      created="2026-01-02T00:00:00Z")
    compiled = compile_for([newer, older])
    assert compiled.tracing.server.sampling_percentage == 40.0
    problem = _only_problem(compiled)
    assert (problem.resource, problem.reason) == ("Telemetry default/by-version", "ConflictingSelector")
    # Where they do not overlap, there is no conflict.
    assert compile_for([newer, older], labels={"app": "ratings", "version": "v1"}).problems == ()


def test_an_empty_selector_conflicts_with_a_selectorless_telemetry_like_istio() -> None:
    older = telemetry("default", "b-older", sampling(40), created="2026-01-01T00:00:00Z")
    newer = telemetry("default", "a-newer", sampling(60), selector={"matchLabels": {}}, created="2026-01-02T00:00:00Z")
    compiled = compile_for([newer, older])
    assert compiled.tracing.client.sampling_percentage == 40.0
    assert (_only_problem(compiled).resource, _only_problem(compiled).reason) == (
        "Telemetry default/a-newer", "ConflictingTelemetry")


def test_provider_names_resolve_case_insensitively_like_istio() -> None:
    mesh = dict(MESH, defaultProviders={"tracing": ["Zipkin"]})
    assert compile_for([], mesh).tracing.client.provider == "zipkin"
    compiled = compile_for([root({"providers": [{"name": "OTel"}]})])
    assert compiled.problems == ()
    assert compiled.tracing.server.provider == "otel"
    assert [provider.name for provider in compiled.providers] == ["otel"]


def test_same_age_conflicts_break_by_name() -> None:
    compiled = compile_for([telemetry("default", "b", sampling(2)), telemetry("default", "a", sampling(1))])
    assert compiled.tracing.client.sampling_percentage == 1.0
    assert _only_problem(compiled).resource == "Telemetry default/b"


MESH_PROBLEMS = [
    ("default provider unknown", dict(MESH, defaultProviders={"tracing": ["jaeger"]}), "UnknownProvider",
     "spec.defaultProviders.tracing[0]"),
    ("a provider without its port", {"extensionProviders": [{"name": "z", "zipkin": {"service": "z"}}, ZIPKIN],
                                     "defaultProviders": {"tracing": ["zipkin"]}},
     "InvalidMeshConfig", "spec.extensionProviders[0].zipkin.port"),
    ("two providers with one name", {"extensionProviders": [ZIPKIN, dict(OTEL, name="zipkin")],
                                     "defaultProviders": {"tracing": ["zipkin"]}},
     "InvalidMeshConfig", "spec.extensionProviders[1].name"),
    ("sampling fallback out of range", dict(MESH, defaultConfig={"tracing": {"sampling": 101}}), "InvalidMeshConfig",
     "spec.defaultConfig.tracing.sampling"),
    ("enableTracing not a boolean", dict(MESH, enableTracing="no"), "InvalidMeshConfig", "spec.enableTracing"),
]


@pytest.mark.parametrize(("mesh", "reason", "field"), [case[1:] for case in MESH_PROBLEMS],
                         ids=[case[0] for case in MESH_PROBLEMS])
def test_mesh_config_problems_leave_out_only_the_broken_part(mesh: dict[str, Any], reason: str, field: str) -> None:
    compiled = compile_for([root(sampling(100))], mesh)
    problem = _only_problem(compiled)
    assert (problem.resource, problem.reason, problem.field) == ("MeshConfig", reason, field)
    assert compiled.tracing.client.sampling_percentage == 100.0


def test_non_tracing_extension_providers_are_not_problems() -> None:
    mesh = dict(MESH, extensionProviders=[ZIPKIN, {"name": "log", "envoyFileAccessLog": {"path": "/dev/stdout"}}])
    assert compile_for([], mesh).problems == ()


def test_a_garbage_spec_never_raises() -> None:
    specs: list[Any] = [None, [], "x", {"tracing": [None]}, {"tracing": [{"providers": "zipkin"}]}, {"selector": 3}]
    for spec in specs:
        body = {"metadata": {"name": "g", "namespace": "default"}, "spec": spec}
        compiled = compile_telemetry(MESH, [body], "default", APP)
        assert compiled.tracing.client.sampling_percentage == 1.0
    assert compile_telemetry({"extensionProviders": "zipkin"}, [], "default", APP).problems


def test_the_deepest_level_that_sets_a_field_wins_whatever_the_order() -> None:
    rng = random.Random(7)
    for _ in range(200):
        levels = {"root": rng.choice([None, 100.0, 30.0]), "ns": rng.choice([None, 50.0, 0.0]),
                  "workload": rng.choice([None, 5.0])}
        objects = []
        if levels["root"] is not None:
            objects.append(root(sampling(levels["root"])))
        if levels["ns"] is not None:
            objects.append(ns(sampling(levels["ns"])))
        if levels["workload"] is not None:
            objects.append(workload(sampling(levels["workload"])))
        rng.shuffle(objects)
        expected = next((v for v in (levels["workload"], levels["ns"], levels["root"]) if v is not None), 1.0)
        compiled = compile_for(objects)
        assert compiled.tracing.client.sampling_percentage == expected, levels
        assert compiled == compile_for(list(reversed(objects)))
