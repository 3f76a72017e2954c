"""Istio's zipkin tracing integration suite, ported: istio/istio `tests/integration/telemetry/tracing/zipkin/`
(main_test.go, server_tracing_test.go, client_tracing_test.go, config_test.go).

The control plane gets Istio's own ControlPlaneValues (copied verbatim into tests/fixtures/istio) through
`tracemesh install`'s reading of an IstioOperator spec; as in Istio's suite no Telemetry is applied: the
MeshConfig's `defaultProviders.tracing: [zipkin]` and `values.pilot.traceSampling: 100` alone turn tracing
on. Traffic and assertions are Istio's: the echo client calls the server's `http` port (Service port 80,
workload port 8090), and the Zipkin API must hold a trace rooted at the client's span named
`server.<ns>.svc.cluster.local:80/*` with the server's span of the same name as its only child.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from istio_tracing import TRACE_HEADER, query_traces, verify_echo_traces
from netns_cluster import Cluster
from netns_istio_echo import NAMESPACE, control_plane_mesh_spec, deploy_echo, echo_pod, send_traffic
from netns_mesh import Mesh
from netns_pods import Kubelet, RunningPod, http_get

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]

SPAN_NAME = f"server.{NAMESPACE}.svc.cluster.local:80/*"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(cluster: Cluster, kubelet: Kubelet) -> AsyncIterator[Mesh]:
    built = Mesh(cluster, kubelet, control_plane_mesh_spec("zipkin"))
    deploy_echo(built)
    try:
        await built.start()
        yield built
    finally:
        await built.close()



async def until_echo_trace(mesh: Mesh, zipkin: tuple[aiohttp.ClientSession, str], limit: int,
                           headers: dict[str, str] | None = None, timeout_s: float = 20.0) -> None:
    """retry.UntilSuccessOrFail around SendTraffic + QueryTraces + VerifyEchoTraces, as Istio's tests run it."""
    session, url = zipkin
    deadline = time.monotonic() + timeout_s
    log: list[str] = []
    while True:
        await send_traffic(mesh, headers)
        traces = await query_traces(session, url, limit, SPAN_NAME, "")
        if verify_echo_traces(NAMESPACE, traces, log):
            return
        if time.monotonic() > deadline:
            raise AssertionError("cannot find expected traces: " + "; ".join(log[-6:]))
        await asyncio.sleep(0.5)


async def config_dump(pod: RunningPod) -> dict[str, Any]:
    """The sidecar's config dump, as `istioctl proxy-config` reads it: from the admin port, inside the pod."""
    status, _, body = await http_get(pod.net.netns, "127.0.0.1", 15000, "/config_dump")
    assert status == 200, body
    document: dict[str, Any] = json.loads(body)
    return document


async def test_server_tracing(mesh: Mesh, zipkin: tuple[aiohttp.ClientSession, str]) -> None:
    """server_tracing_test.go TestServerTracing."""
    await until_echo_trace(mesh, zipkin, 300)


async def test_client_tracing(mesh: Mesh, zipkin: tuple[aiohttp.ClientSession, str]) -> None:
    """client_tracing_test.go TestClientTracing: client-initiated tracing with `x-client-trace-id`."""
    await until_echo_trace(mesh, zipkin, 100, {TRACE_HEADER: str(uuid.uuid4())})


async def test_zipkin_config_dump(mesh: Mesh) -> None:
    """config_test.go TestZipkinConfigDump: the MeshConfig's zipkin provider as the proxy holds it."""
    dump = await config_dump(echo_pod(mesh, "server"))
    zipkin = next(provider["zipkin"] for provider in dump["providers"] if "zipkin" in provider)
    assert zipkin["traceContextOption"] == "USE_B3_WITH_W3C_PROPAGATION"
    assert zipkin["timeout"] == "5s"
    headers = {(header["name"], header["value"]) for header in zipkin["headers"]}
    assert ("X-Custom-Header", "test-value") in headers
    assert ("Authorization", "Bearer test-token") in headers
    # And what the option means on the wire (Envoy's USE_B3_WITH_W3C_PROPAGATION): both formats reach the app.
    seen = await send_traffic(mesh)
    assert "x-b3-traceid" in seen["headers"] and "traceparent" in seen["headers"], seen["headers"]
    assert seen["headers"]["traceparent"].split("-")[1].endswith(seen["headers"]["x-b3-traceid"])


async def test_zipkin_config_with_default_provider(mesh: Mesh) -> None:
    """config_test.go TestZipkinConfigWithDefaultProvider: defaultProviders alone, no Telemetry, configures tracing."""
    assert not mesh.control.telemetries
    for app in ("server", "client-primary"):
        tracing = (await config_dump(echo_pod(mesh, app)))["tracing"]
        assert tracing["client"]["provider"] == tracing["server"]["provider"] == "zipkin", tracing
        assert tracing["client"]["samplingPercentage"] == 100.0  # values.pilot.traceSampling
