"""Istio's OpenTelemetry tracing integration suite, ported: istio/istio
`tests/integration/telemetry/tracing/otelcollector/tracing_test.go`, TestProxyTracingOpenTelemetryProvider.

The control plane gets Istio's ControlPlaneValues verbatim (five `opentelemetry` providers: OTLP/gRPC on
4317, OTLP/HTTP on 4318 with a relative `http.path`, resource detectors, gRPC initial metadata, and an
`Authorization` header read from istiod's environment for a collector port that demands a bearer token);
each case applies Istio's Telemetry file verbatim in the echo namespace, sends traffic with `key1: val1`,
and finds the trace in the Zipkin API by Istio's annotation query on the case's custom tags.

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
from istio_tracing import query_traces, verify_echo_traces
from netns_cluster import Cluster
from netns_istio_echo import NAMESPACE, control_plane_mesh_spec, deploy_echo, istio_fixture, send_traffic
from netns_mesh import SYSTEM, Mesh
from netns_pods import Kubelet

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
