"""Istio's OpenTelemetry tracing integration suite, ported: istio/istio
`tests/integration/telemetry/tracing/otelcollector/tracing_test.go`, TestProxyTracingOpenTelemetryProvider.

The control plane gets Istio's ControlPlaneValues verbatim (five `opentelemetry` providers: OTLP/gRPC on
4317, OTLP/HTTP on 4318 with a relative `http.path`, resource detectors, gRPC initial metadata, and an
`Authorization` header read from istiod's environment for a collector port that demands a bearer token);
each case applies Istio's Telemetry file verbatim in the echo namespace, sends traffic with `key1: val1`,
and finds the trace in the Zipkin API by Istio's annotation query on the case's custom tags.

TestGatewayTracing sends through the ingress gateway (a pod of manifests/ingressgateway.yaml, as Istio's
framework installs one) after applying Istio's echo-gateway files, and checks Istio's ingress trace shape.

Istio's collector is an OpenTelemetry Collector exporting to Zipkin; here the embedded collector takes
OTLP/gRPC (4317), OTLP/HTTP (4318) and OTLP/gRPC behind a bearer token (5317, as Istio's
samples/open-telemetry/otel.yaml configures `bearertokenauth` with `somerandomtoken`), and serves the
Zipkin API itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
import yaml
from istio_tracing import query_traces, verify_echo_traces, verify_otel_ingress_traces
from netns_cluster import Cluster
from netns_istio_echo import (
    ISTIO_FIXTURES,
    NAMESPACE,
    control_plane_mesh_spec,
    deploy_echo,
    istio_fixture,
    send_traffic,
)
from netns_mesh import REPO, SYSTEM, Mesh
from netns_pods import Kubelet, http_status

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]

# setupOtelCredentials: the Secret istiod's OTEL_GRPC_AUTHORIZATION comes from.
BEARER_TOKEN = "somerandomtoken"
ISTIOD_ENVIRONMENT = {"OTEL_GRPC_AUTHORIZATION": f"Bearer {BEARER_TOKEN}"}
# TestProxyTracingOpenTelemetryProvider's test cases: name, customAttribute, cfgFile.
CASES = [
    ("grpc exporter", "provider=otel and key1=val1", "otel-tracing.yaml"),
    ("http exporter", "provider=otel-http", "otel-tracing-http.yaml"),
    ("resource detectors", "provider=otel-grpc-with-res-detectors", "otel-tracing-res-detectors.yaml"),
    ("grpc exporter with initial metadata", "provider=test-otel-grpc-with-initial-metadata",
     "otel-grpc-with-initial-metadata.yaml"),
    ("grpc exporter with auth", "provider=otel-with-auth", "otel-tracing-with-auth.yaml"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(cluster: Cluster, kubelet: Kubelet) -> AsyncIterator[Mesh]:
    built = Mesh(cluster, kubelet, control_plane_mesh_spec("otelcollector"), environ=ISTIOD_ENVIRONMENT,
                 collector_args=["--otlp-grpc-auth-port", "5317", "--bearer-token", BEARER_TOKEN])
    built.add_service("opentelemetry-collector", SYSTEM, [(4317, 4317), (4318, 4318), (5317, 5317)],
                      {"app": "zipkin"})
    deploy_echo(built)
    built.add_objects([doc for doc in yaml.safe_load_all((REPO / "manifests/ingressgateway.yaml").read_text()) if doc])
    try:
        await built.start()
        yield built
    finally:
        await built.close()



@pytest.mark.parametrize(("name", "custom_attribute", "cfg_file"), CASES, ids=[case[0] for case in CASES])
async def test_proxy_tracing_open_telemetry_provider(mesh: Mesh, zipkin: tuple[aiohttp.ClientSession, str],
                                                     name: str, custom_attribute: str, cfg_file: str) -> None:
    """tracing_test.go TestProxyTracingOpenTelemetryProvider, one sub-test per case."""
    telemetry = istio_fixture(f"otelcollector/testdata/{cfg_file}")
    telemetry["metadata"]["namespace"] = NAMESPACE  # ctx.ConfigIstio().YAML(appNsInst.Name(), tc.cfgFile)
    mesh.control.apply_telemetry(telemetry)
    session, url = zipkin
    deadline = time.monotonic() + 20.0
    log: list[str] = []
    while True:
        await send_traffic(mesh, {"key1": "val1"})
        traces = await query_traces(session, url, 300, "", custom_attribute)
        if verify_echo_traces(NAMESPACE, traces, log):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: cannot find expected traces ({len(traces)} found): {'; '.join(log[-6:])}")
        await asyncio.sleep(0.5)


async def send_ingress_traffic(mesh: Mesh, path: str) -> None:
    """tracing.go's SendIngressTraffic: 10 GETs of `path` through the ingress gateway, each answered 200."""
    gateway = mesh.cluster.service("istio-ingressgateway", SYSTEM)
    for _ in range(10):
        assert await http_status(mesh.cluster.node, gateway.cluster_ip, 80, path, timeout_s=10.0) == 200


async def test_gateway_tracing(mesh: Mesh, zipkin: tuple[aiohttp.ClientSession, str]) -> None:
    """tracing_test.go TestGatewayTracing."""
    # Istio's framework removes each case's Telemetry after it; so here.
    for name in list(mesh.control.telemetries.get(NAMESPACE, {})):
        mesh.control.delete_telemetry(NAMESPACE, name)
    telemetry = istio_fixture("otelcollector/testdata/echo-gateway-tracing.yaml")
    telemetry["metadata"]["namespace"] = SYSTEM
    mesh.control.apply_telemetry(telemetry)
    echo_gateway = (ISTIO_FIXTURES / "otelcollector/testdata/echo-gateway.yaml").read_text()
    for document in (doc for doc in yaml.safe_load_all(echo_gateway) if doc):
        mesh.control.apply_networking(document, NAMESPACE)
    session, url = zipkin
    deadline = time.monotonic() + 30.0
    log: list[str] = []
    while True:
        path = "/echo-server"
        try:
            await send_ingress_traffic(mesh, path)
        except (AssertionError, OSError, TimeoutError) as error:  # the routes are not pushed yet: retry, as Istio
            log.append(f"cannot send traffic: {error!r}")
        else:
            traces = await query_traces(session, url, 300, "", "provider=otel-ingress")
            if verify_otel_ingress_traces(NAMESPACE, path, traces, log):
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"cannot find expected traces: {'; '.join(log[-6:])}")
        await asyncio.sleep(1.0)
