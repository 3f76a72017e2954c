"""What `tracemesh demo` runs, worked out before anything starts (pure: files' contents and ports in, plan out).

Every Bookinfo workload gets a sidecar whose proxy config document is the one a cluster would
push, with local-mode wiring instead of iptables: an explicit inbound listener in front of the
app, an outbound listener the app's HTTP_PROXY points at, and a small service registry mapping
each service FQDN to the sidecars behind it (reviews round-robins across v1, v2 and v3). The
tracing settings come from the same Telemetry and MeshConfig YAML a cluster gets, compiled by
the operator's compiler; the providers' in-cluster hosts resolve through the registry to the
local collector. Istio's ingress gateway (the proxy in router mode, routed by Bookinfo's own gateway
file) stands in front of productpage, where `$GATEWAY_URL` is in Istio's tasks.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tracemesh_cli.demo.gateway import GATEWAY_LABELS, GATEWAY_NAMESPACE, GATEWAY_SERVICE, gateway_routes
from tracemesh_operator.compiler import CompiledTelemetry, compile_telemetry
from tracemesh_sidecar.config import (
    InboundConfig,
    InboundPort,
    Listeners,
    NodeIdentity,
    OutboundConfig,
    ProviderConfig,
    ProxyConfig,
    ServiceEntry,
)
from tracemesh_sidecar.tracing.hosts import normalize_host

NAMESPACE = "default"
CLUSTER_DOMAIN = "cluster.local"
SERVICE_PORT = 9080  # every Bookinfo service's port, as in the manifests
LOOPBACK = "127.0.0.1"
# The in-cluster addresses of the tracing backends the sample MeshConfigs name (samples/bookinfo/meshconfig*.yaml:
# the addons, Istio's Jaeger task, Istio's otelcollector test), all served locally by the one collector.
ZIPKIN_HOST = "zipkin.istio-system.svc.cluster.local"
JAEGER_COLLECTOR_HOST = "jaeger-collector.istio-system.svc.cluster.local"
OTEL_COLLECTOR_HOST = "opentelemetry-collector.istio-system.svc.cluster.local"
ZIPKIN_PORT, OTLP_HTTP_PORT, OTLP_GRPC_PORT = 9411, 4318, 4317


class PlanError(ValueError):
    """The demo's inputs cannot make a working mesh; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Workload:
    service: str
    version: str

    @property
    def name(self) -> str:
        return f"{self.service}-{self.version}"

    @property
    def pod_name(self) -> str:
        return f"{self.name}-local"

    @property
    def labels(self) -> dict[str, str]:
        return {"app": self.service, "version": self.version}


WORKLOADS = (
    Workload("productpage", "v1"),
    Workload("details", "v1"),
    Workload("ratings", "v1"),
    Workload("reviews", "v1"),
    Workload("reviews", "v2"),
    Workload("reviews", "v3"),
)


@dataclass(frozen=True, slots=True)
class CollectorPorts:
    zipkin: int  # Zipkin v2 API and span ingest
    otlp: int  # OTLP/HTTP ingest
    query: int  # Jaeger query API
    otlp_grpc: int  # OTLP/gRPC ingest


@dataclass(frozen=True, slots=True)
class WorkloadPorts:
    app: int  # where the Bookinfo service listens
    inbound: int  # the sidecar's explicit inbound listener in front of it
    outbound: int  # the sidecar's outbound listener, the app's HTTP_PROXY
    admin: int  # the sidecar's admin (config_dump, stats)


@dataclass(frozen=True, slots=True)
class WorkloadPlan:
    workload: Workload
    ports: WorkloadPorts
    proxy_config: ProxyConfig

    def app_environment(self) -> dict[str, str]:
        """What the Bookinfo process needs set: its port, version, pod name, and its sidecar as HTTP proxy."""
        proxy = f"http://{LOOPBACK}:{self.ports.outbound}"
        return {
            "PORT": str(self.ports.app),
            "BIND_ADDRESS": LOOPBACK,
            "SERVICE_VERSION": self.workload.version,
            "HOSTNAME": self.workload.pod_name,
            "HTTP_PROXY": proxy,
            "http_proxy": proxy,
        }


@dataclass(frozen=True, slots=True)
class GatewayPorts:
    listen: int  # the gateway's HTTP listener: $GATEWAY_URL
    admin: int


@dataclass(frozen=True, slots=True)
class GatewayPlan:
    ports: GatewayPorts
    proxy_config: ProxyConfig

    @property
    def url(self) -> str:
        """`$GATEWAY_URL` of Istio's tasks: host:port."""
        return f"{LOOPBACK}:{self.ports.listen}"


@dataclass(frozen=True, slots=True)
class DemoPlan:
    workloads: tuple[WorkloadPlan, ...]
    collector: CollectorPorts
    provider: ProviderConfig  # where productpage's spans go (what the demo reads back)
    sampling_percentage: float
    gateway: GatewayPlan

    @property
    def entry_url(self) -> str:
        """productpage through the ingress gateway, where users (and the demo's requests) come in."""
        return f"http://{self.gateway.url}/productpage"


def registry(ports: Mapping[Workload, WorkloadPorts], collector: CollectorPorts) -> tuple[ServiceEntry, ...]:
    """The local service registry: each service FQDN:port -> the endpoints behind it, in workload order."""
    endpoints: dict[tuple[str, int], list[str]] = {}
    for workload, workload_ports in ports.items():
        host = f"{workload.service}.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"
        endpoints.setdefault((host, SERVICE_PORT), []).append(f"{LOOPBACK}:{workload_ports.inbound}")
    endpoints[(ZIPKIN_HOST, ZIPKIN_PORT)] = [f"{LOOPBACK}:{collector.zipkin}"]
    for host in (JAEGER_COLLECTOR_HOST, OTEL_COLLECTOR_HOST):  # both ingest OTLP on Istio's ports
        endpoints[(host, OTLP_HTTP_PORT)] = [f"{LOOPBACK}:{collector.otlp}"]
        endpoints[(host, OTLP_GRPC_PORT)] = [f"{LOOPBACK}:{collector.otlp_grpc}"]
    endpoints[(JAEGER_COLLECTOR_HOST, ZIPKIN_PORT)] = [f"{LOOPBACK}:{collector.zipkin}"]  # Jaeger also takes Zipkin
    return tuple(ServiceEntry(host=host, port=port, endpoints=tuple(addresses))
                 for (host, port), addresses in endpoints.items())


def resolve_provider(provider: ProviderConfig, services: Sequence[ServiceEntry]) -> ProviderConfig:
    """The provider pointed at the local endpoint its in-cluster host stands for."""
    host, _ = normalize_host(provider.service, NAMESPACE, CLUSTER_DOMAIN)
    for entry in services:
        if entry.host == host and entry.port == provider.port:
            address, _, port = entry.endpoints[0].rpartition(":")
            return replace(provider, service=address, port=int(port))
    served = ", ".join(f"{entry.host}:{entry.port}" for entry in services if "istio-system" in entry.host)
    raise PlanError(f"MeshConfig extensionProviders {provider.name!r} sends to {provider.service}:{provider.port}, "
                    f"which local mode does not run; point it at one of {served}")


def with_provider(telemetries: Sequence[Mapping[str, Any]], mesh_spec: Mapping[str, Any],
                  name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`--provider NAME`: every Telemetry tracing rule (or, with none, the mesh default) names NAME."""
    new_telemetries = [copy.deepcopy(dict(obj)) for obj in telemetries]
    new_mesh = copy.deepcopy(dict(mesh_spec))
    rules = [rule for obj in new_telemetries for rule in (obj.get("spec") or {}).get("tracing") or []
             if isinstance(rule, dict)]
    for rule in rules:
        rule["providers"] = [{"name": name}]
    if not rules:
        new_mesh["defaultProviders"] = {**(new_mesh.get("defaultProviders") or {}), "tracing": [name]}
    return new_telemetries, new_mesh


def _compiled_telemetry(mesh_spec: Mapping[str, Any], telemetries: Sequence[Mapping[str, Any]], namespace: str,
                        labels: Mapping[str, str]) -> CompiledTelemetry:
    compiled = compile_telemetry(mesh_spec, telemetries, namespace, labels)
    if compiled.problems:
        raise PlanError("the mesh configuration has problems:\n" +
                        "\n".join(f"  {problem}" for problem in compiled.problems))
    return compiled


def plan_gateway(mesh_spec: Mapping[str, Any], telemetries: Sequence[Mapping[str, Any]],
                 networking: Sequence[Mapping[str, Any]], services: Sequence[ServiceEntry],
                 ports: GatewayPorts) -> GatewayPlan:
    """istio-ingressgateway in router mode: its routes from `networking`, its tracing as a gateway's."""
    try:
        routes = gateway_routes(networking, services, f"{LOOPBACK}:{ports.listen}")
    except ValueError as error:
        raise PlanError(str(error)) from None
    compiled = _compiled_telemetry(mesh_spec, telemetries, GATEWAY_NAMESPACE, GATEWAY_LABELS)
    return GatewayPlan(ports, ProxyConfig(
        version="1",
        node=NodeIdentity(pod_name=f"{GATEWAY_SERVICE}-local", namespace=GATEWAY_NAMESPACE, pod_ip=LOOPBACK,
                          canonical_service=GATEWAY_SERVICE, service_account=f"{GATEWAY_SERVICE}-service-account",
                          labels=GATEWAY_LABELS),
        proxy_type="router",
        gateway=routes.gateway,
        route_tables=routes.route_tables,
        listeners=Listeners(outbound=None, inbound=None, admin=f"{LOOPBACK}:{ports.admin}", health=None,
                            prometheus=None),
        outbound=OutboundConfig(services=tuple(services)),
        tracing=compiled.tracing,
        providers=tuple(resolve_provider(provider, services) for provider in compiled.providers),
        metrics=compiled.metrics,
        access_logs=compiled.access_logs,
    ))


def plan_demo(mesh_spec: Mapping[str, Any], telemetries: Sequence[Mapping[str, Any]],
              ports: Mapping[Workload, WorkloadPorts], collector: CollectorPorts,
              networking: Sequence[Mapping[str, Any]], gateway_ports: GatewayPorts) -> DemoPlan:
    """Compiles each workload's tracing and builds its proxy config, and the gateway's; raises PlanError on
    any problem."""
    services = registry(ports, collector)
    plans = []
    for workload, workload_ports in ports.items():
        compiled = _compiled_telemetry(mesh_spec, telemetries, NAMESPACE, workload.labels)
        plans.append(WorkloadPlan(workload, workload_ports, ProxyConfig(
            version="1",
            node=NodeIdentity(
                pod_name=workload.pod_name, namespace=NAMESPACE, pod_ip=LOOPBACK,
                canonical_service=workload.service, canonical_revision=workload.version,
                service_account=f"bookinfo-{workload.service}", labels=workload.labels,
            ),
            # Local mode: no capture listeners, no shared health ports; every sidecar has its own loopback ports.
            listeners=Listeners(outbound=f"{LOOPBACK}:{workload_ports.outbound}", inbound=None,
                                admin=f"{LOOPBACK}:{workload_ports.admin}", health=None, prometheus=None),
            inbound=InboundConfig(app_address=LOOPBACK, ports=(InboundPort(
                port=SERVICE_PORT, app_port=workload_ports.app, listen=f"{LOOPBACK}:{workload_ports.inbound}"),)),
            outbound=OutboundConfig(services=services),
            tracing=compiled.tracing,
            providers=tuple(resolve_provider(provider, services) for provider in compiled.providers),
            metrics=compiled.metrics,
            access_logs=compiled.access_logs,
        )))
    entry = next(plan for plan in plans if plan.workload.service == "productpage")
    policy = entry.proxy_config.tracing.server
    provider = entry.proxy_config.provider(policy.provider)
    if provider is None or not policy.enabled or policy.disable_span_reporting:
        raise PlanError("the mesh configuration reports no spans for productpage; name a provider in the "
                        "Telemetry (spec.tracing[].providers) or in the MeshConfig's defaultProviders.tracing")
    gateway = plan_gateway(mesh_spec, telemetries, networking, services, gateway_ports)
    return DemoPlan(tuple(plans), collector, provider, policy.sampling_percentage, gateway)
