"""A Jaeger-instrumented client calls through the mesh whose sidecars run Kong's `preserve` header mode (set per
workload by the `tracing.tracemesh.io/header-type` pod annotation, the MeshConfig staying Istio's sample): the
client's own span and the sidecars' join one trace, the app behind the mesh gets `uber-trace-id` back, and the
client sees the trace id in the response header `x-trace-id` (responseHeaderForTraceId)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from netns_cluster import Cluster
from netns_mesh import Mesh, load_yaml, wait_for_traces
from netns_pods import Kubelet, exec_in_pod

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]

APPS = Path(__file__).with_name("netns_apps.py")
PRESERVE = {"tracing.tracemesh.io/header-type": "preserve",
            "tracing.tracemesh.io/response-header-for-trace-id": "X-Trace-Id",
            # the client reports its own span straight to the collector, as a Jaeger client's reporter does
            "traffic.sidecar.istio.io/excludeOutboundPorts": "9411"}


def app_pod(app: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{app}-netns", "namespace": "default", "labels": {"app": app, "version": "v1"},
                         "annotations": PRESERVE},
            "spec": {"containers": [{"name": "app", "image": "netns-apps",
                                     "command": ["python", str(APPS), "http", "9080"],
                                     "ports": [{"containerPort": 9080}],
                                     "securityContext": {"runAsUser": 1000, "runAsGroup": 1000}}]}}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(cluster: Cluster, kubelet: Kubelet) -> AsyncIterator[Mesh]:
    built = Mesh(cluster, kubelet, load_yaml("samples/bookinfo/meshconfig.yaml")["spec"])
    built.control.apply_telemetry(load_yaml("samples/bookinfo/telemetry.yaml"))
    for app in ("client", "server"):
        built.add_workload(app_pod(app))
        built.add_service(app, "default", [(9080, 9080)], {"app": app})
    try:
        await built.start()
        yield built
    finally:
        await built.close()


async def test_a_jaeger_clients_spans_and_the_sidecars_join_one_trace(
        mesh: Mesh, zipkin: tuple[aiohttp.ClientSession, str], summary: list[str]) -> None:
    client = next(pod for pod in mesh.workloads if pod.net.labels["app"] == "client")
    done = exec_in_pod(client.net, ["python", str(APPS), "jaeger-call", "http://server:9080/anything",
                                    "http://zipkin.istio-system:9411/api/v2/spans"], uid=1000)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    trace_id, client_span = answer["trace_id"], answer["span_id"]
    assert answer["status"] == 200
    assert answer["headers"]["x-trace-id"] == trace_id  # the server's sidecar, inbound: the hop the call reached

    session, url = zipkin
    [trace] = [trace for trace in await wait_for_traces(session, url, "jaeger-client", 1, [3])
               if trace[0]["traceId"] == trace_id]
    by_service = {(span["localEndpoint"]["serviceName"], span["kind"]): span for span in trace}
    sidecar_client = by_service[("client.default", "CLIENT")]
    sidecar_server = by_service[("server.default", "SERVER")]
    assert by_service[("jaeger-client", "CLIENT")]["id"] == client_span
    assert sidecar_client["parentId"] == client_span  # read from uber-trace-id
    assert sidecar_server["parentId"] == sidecar_client["id"]  # written back as uber-trace-id, read again
    # The app behind the mesh got the format its client sent, naming the server sidecar's span; no B3 added.
    seen = json.loads(answer["body"])["headers"]
    assert seen["uber-trace-id"] == f"{trace_id}:{sidecar_server['id']}:{sidecar_client['id']}:01"
    assert "x-b3-traceid" not in seen and "traceparent" not in seen
    summary.append(f"Jaeger client through preserve-mode sidecars: 1 trace of {len(trace)} spans")
