"""The demo's plan: proxy configs wired by explicit proxy and the local registry, tracing from the sample YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tracemesh_cli.demo.inputs import (
    DEFAULT_GATEWAY_ROUTES,
    DEFAULT_MESH_CONFIG,
    DEFAULT_TELEMETRY,
    SAMPLES_DIR,
    InputError,
    read_mesh_spec,
    read_networking,
    read_telemetries,
)
from tracemesh_cli.demo.plan import (
    WORKLOADS,
    CollectorPorts,
    DemoPlan,
    GatewayPorts,
    PlanError,
    WorkloadPorts,
    plan_demo,
    with_provider,
)
from tracemesh_sidecar.config import dump_proxy_config, parse_proxy_config

COLLECTOR = CollectorPorts(zipkin=19411, otlp=14318, query=26686, otlp_grpc=14317)
GATEWAY = GatewayPorts(listen=8080, admin=25000)


def ports() -> dict[Any, WorkloadPorts]:
    result = {}
    for index, workload in enumerate(WORKLOADS):
        base = 30000 + 10 * index
        inbound = 9080 if workload.service == "productpage" else base + 1
        result[workload] = WorkloadPorts(app=base, inbound=inbound, outbound=base + 2, admin=base + 3)
    return result


def sample_plan(provider: str | None = None, mesh_config: Path = DEFAULT_MESH_CONFIG) -> DemoPlan:
    telemetries, mesh = read_telemetries(DEFAULT_TELEMETRY), read_mesh_spec(mesh_config)
    if provider:
        telemetries, mesh = with_provider(telemetries, mesh, provider)
    return plan_demo(mesh, telemetries, ports(), COLLECTOR, read_networking(DEFAULT_GATEWAY_ROUTES), GATEWAY)


def test_every_workload_gets_a_sidecar_in_front_of_its_app() -> None:
    plan = sample_plan()
    assert [(p.workload.service, p.workload.version) for p in plan.workloads] == [
        ("productpage", "v1"), ("details", "v1"), ("ratings", "v1"), ("reviews", "v1"), ("reviews", "v2"),
        ("reviews", "v3")]
    assert plan.entry_url == "http://127.0.0.1:8080/productpage"  # through the ingress gateway
    for workload in plan.workloads:
        config = workload.proxy_config
        node = config.node
        assert (node.pod_name, node.namespace, node.pod_ip) == (f"{workload.workload.name}-local", "default",
                                                                "127.0.0.1")
        assert (node.canonical_service, node.canonical_revision) == (workload.workload.service,
                                                                     workload.workload.version)
        assert node.service_name == f"{workload.workload.service}.default"
        [port] = config.inbound.ports
        assert (port.port, port.app_port, port.listen) == (9080, workload.ports.app,
                                                           f"127.0.0.1:{workload.ports.inbound}")
        assert config.listeners.outbound == f"127.0.0.1:{workload.ports.outbound}"
        assert config.listeners.inbound is None and config.listeners.health is None
        assert config.listeners.admin == f"127.0.0.1:{workload.ports.admin}"
        env = workload.app_environment()
        assert env["HTTP_PROXY"] == env["http_proxy"] == f"http://127.0.0.1:{workload.ports.outbound}"
        assert (env["PORT"], env["SERVICE_VERSION"]) == (str(workload.ports.app), workload.workload.version)
        # what the sidecar reads back is what was planned
        assert parse_proxy_config(dump_proxy_config(config)) == config


def test_the_gateway_routes_bookinfos_gateway_file_to_productpage() -> None:
    """samples/bookinfo/networking/bookinfo-gateway.yaml, compiled as the operator compiles it for a gateway pod."""
    gateway = sample_plan().gateway
    config = gateway.proxy_config
    assert gateway.url == "127.0.0.1:8080"
    assert (config.proxy_type, config.node.canonical_service, config.node.namespace) == (
        "router", "istio-ingressgateway", "istio-system")
    assert config.node.service_name == "istio-ingressgateway.istio-system"
    assert config.gateway is not None
    [listener] = config.gateway.listeners
    assert listener.address == "127.0.0.1:8080"
    table = config.route_table(listener.route_table)
    assert table is not None
    [virtual_host] = table.virtual_hosts
    assert (virtual_host.name, virtual_host.domains) == ("default/bookinfo", ("*",))
    decorators = [route.decorator for route in virtual_host.routes]
    assert "productpage.default.svc.cluster.local:9080/productpage" in decorators
    assert {route.destinations[0].host for route in virtual_host.routes} == {"productpage.default.svc.cluster.local"}
    assert config.tracing.client.provider == "zipkin"  # a gateway traces in Istio's CLIENT mode
    assert config.listeners.admin == "127.0.0.1:25000" and config.listeners.outbound is None
    assert parse_proxy_config(dump_proxy_config(config)) == config


def test_a_gateway_file_without_a_gateway_for_the_ingress_is_refused(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(DEFAULT_GATEWAY_ROUTES.read_text().replace("istio: ingressgateway", "istio: egressgateway"))
    with pytest.raises(PlanError, match="no Gateway selects the ingress gateway's labels"):
        plan_demo(read_mesh_spec(DEFAULT_MESH_CONFIG), read_telemetries(DEFAULT_TELEMETRY), ports(), COLLECTOR,
                  read_networking(routes), GATEWAY)


def test_registry_maps_services_to_sidecars_and_reviews_round_robins() -> None:
    plan = sample_plan()
    inbound = {p.workload.name: f"127.0.0.1:{p.ports.inbound}" for p in plan.workloads}
    services = {(s.host, s.port): s.endpoints for s in plan.workloads[0].proxy_config.outbound.services}
    assert services[("reviews.default.svc.cluster.local", 9080)] == (
        inbound["reviews-v1"], inbound["reviews-v2"], inbound["reviews-v3"])
    assert services[("details.default.svc.cluster.local", 9080)] == (inbound["details-v1"],)
    assert services[("ratings.default.svc.cluster.local", 9080)] == (inbound["ratings-v1"],)
    assert services[("zipkin.istio-system.svc.cluster.local", 9411)] == ("127.0.0.1:19411",)
    assert services[("jaeger-collector.istio-system.svc.cluster.local", 4318)] == ("127.0.0.1:14318",)
    assert all(p.proxy_config.outbound == plan.workloads[0].proxy_config.outbound for p in plan.workloads)


def test_tracing_comes_from_the_telemetry_and_the_provider_resolves_to_the_collector() -> None:
    plan = sample_plan()
    assert (plan.provider.kind, plan.provider.url) == ("zipkin", "http://127.0.0.1:19411/api/v2/spans")
    assert plan.sampling_percentage == 100
    for workload in plan.workloads:
        tracing = workload.proxy_config.tracing
        assert tracing.client.provider == tracing.server.provider == "zipkin"
        assert tracing.client.sampling_percentage == tracing.server.sampling_percentage == 100


@pytest.mark.parametrize(("provider", "kind"), [("jaeger", "jaeger"), ("otel", "opentelemetry")])
def test_provider_override_sends_otlp_to_the_collector(provider: str, kind: str) -> None:
    plan = sample_plan(provider)
    assert (plan.provider.name, plan.provider.kind) == (provider, kind)
    assert plan.provider.url == "http://127.0.0.1:14318/v1/traces"
    assert all(p.proxy_config.tracing.client.provider == provider for p in plan.workloads)


def test_istio_jaeger_task_provider_exports_otlp_grpc_to_the_collector() -> None:
    """istio.io's Jaeger task: provider `jaeger` = opentelemetry to jaeger-collector:4317 without `http`."""
    plan = sample_plan("jaeger", SAMPLES_DIR / "meshconfig-jaeger-task.yaml")
    assert (plan.provider.name, plan.provider.kind, plan.provider.transport) == ("jaeger", "opentelemetry", "grpc")
    assert plan.provider.url == "grpc://127.0.0.1:14317"


def test_istio_otelcollector_http_provider_joins_its_relative_path() -> None:
    """Istio's otelcollector test `test-otel-http`: `path: "v1/traces"` on 4318, with its header."""
    plan = sample_plan("test-otel-http", SAMPLES_DIR / "meshconfig-otel-http.yaml")
    assert (plan.provider.kind, plan.provider.transport) == ("opentelemetry", "http")
    assert plan.provider.url == "http://127.0.0.1:14318/v1/traces"
    assert plan.provider.headers == (("some-header", "some-value"),)
    grpc_plan = sample_plan("test-otel", SAMPLES_DIR / "meshconfig-otel-http.yaml")
    assert grpc_plan.provider.url == "grpc://127.0.0.1:14317"


def test_unknown_provider_is_reported_with_the_compilers_words() -> None:
    with pytest.raises(PlanError, match=r"the mesh configuration has problems:\n.*'lightstep'"):
        sample_plan("lightstep")


def test_provider_host_that_local_mode_does_not_run() -> None:
    mesh = read_mesh_spec(DEFAULT_MESH_CONFIG)
    mesh["extensionProviders"][0]["zipkin"]["service"] = "tempo.observability.svc.cluster.local"
    with pytest.raises(PlanError, match=r"'zipkin' sends to tempo.observability.svc.cluster.local:9411, which "
                                        r"local mode does not run; point it at one of zipkin.istio-system"):
        plan_demo(mesh, read_telemetries(DEFAULT_TELEMETRY), ports(), COLLECTOR,
                  read_networking(DEFAULT_GATEWAY_ROUTES), GATEWAY)


def test_short_provider_host_resolves_like_cluster_dns() -> None:
    mesh = read_mesh_spec(DEFAULT_MESH_CONFIG)
    mesh["extensionProviders"][0]["zipkin"]["service"] = "zipkin.istio-system"
    plan = plan_demo(mesh, read_telemetries(DEFAULT_TELEMETRY), ports(), COLLECTOR,
                  read_networking(DEFAULT_GATEWAY_ROUTES), GATEWAY)
    assert plan.provider.url == "http://127.0.0.1:19411/api/v2/spans"


def test_tracing_switched_off_is_refused() -> None:
    mesh = {**read_mesh_spec(DEFAULT_MESH_CONFIG), "enableTracing": False}
    with pytest.raises(PlanError, match="reports no spans for productpage"):
        plan_demo(mesh, read_telemetries(DEFAULT_TELEMETRY), ports(), COLLECTOR,
                  read_networking(DEFAULT_GATEWAY_ROUTES), GATEWAY)


def test_with_provider_without_telemetry_sets_the_mesh_default() -> None:
    telemetries, mesh = with_provider([], {"defaultProviders": {"tracing": ["zipkin"]}}, "jaeger")
    assert (telemetries, mesh) == ([], {"defaultProviders": {"tracing": ["jaeger"]}})
    original = read_telemetries(DEFAULT_TELEMETRY)
    changed, _ = with_provider(original, {}, "jaeger")
    assert changed[0]["spec"]["tracing"][0]["providers"] == [{"name": "jaeger"}]
    assert original[0]["spec"]["tracing"][0]["providers"] == [{"name": "zipkin"}]  # input left alone


# --------------------------------------------------------------------------------------------- input files


def test_missing_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"--telemetry .*nope.yaml: cannot read it"):
        read_telemetries(tmp_path / "nope.yaml")


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("spec: [unclosed\n")
    with pytest.raises(InputError, match=r"--mesh-config .*mesh.yaml: not valid YAML"):
        read_mesh_spec(path)


def test_wrong_kind_and_document_count(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("kind: Telemetry\nspec: {}\n---\nkind: ConfigMap\n")
    with pytest.raises(InputError, match=r"document 2 is 'ConfigMap', not a Telemetry"):
        read_telemetries(path)
    with pytest.raises(InputError, match="holds 2 documents; give exactly one MeshConfig"):
        read_mesh_spec(path)
