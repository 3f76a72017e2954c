"""A 3-service chain a -> b -> c whose middle hop reports nothing: the trace must not break there.

Istio compiles `disableSpanReporting: true` (and a direction with no provider) to an HTTP connection
manager without tracing (pilot/pkg/model/telemetry.go sets the spec Disabled; pilot/pkg/networking/core/
tracing.go then configures no tracer), and Envoy without a tracer passes the trace headers through
untouched. So the spans below a silent hop join the last span that was reported: every reported span's
parent is a reported span, in one trace.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from netns_cluster import Cluster
from netns_mesh import Mesh, load_yaml, zipkin_traces
from netns_pods import Kubelet, RunningPod, http_get
from test_netns_sidecars import app_container, app_pod, workload

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]

SERVICES = ("a", "b", "c")
ZipkinApi = tuple[aiohttp.ClientSession, str]  # the `zipkin` fixture: a session and the API's base URL


def silent_b(mode: str) -> dict[str, Any]:
    """A workload Telemetry turning b's span reporting off for the directions `mode` names."""
    return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
            "metadata": {"name": "b-silent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "b"}},
                     "tracing": [{"match": {"mode": mode}, "disableSpanReporting": True}]}}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(cluster: Cluster, kubelet: Kubelet) -> AsyncIterator[Mesh]:
    built = Mesh(cluster, kubelet, load_yaml("samples/bookinfo/meshconfig.yaml")["spec"])
    built.control.apply_telemetry(load_yaml("samples/bookinfo/telemetry.yaml"))
    for name in SERVICES:
        built.add_workload(app_pod(name, [app_container("app", "http", 9080)]))
        built.add_service(name, "default", [(9080, 9080)], {"app": name})
    try:
        await built.start()
        yield built
    finally:
        await built.close()


async def proxy_tracing(pod: RunningPod) -> dict[str, Any]:
    _, _, body = await http_get(pod.net.netns, "127.0.0.1", 15000, "/config_dump")
    tracing: dict[str, Any] = json.loads(body)["tracing"]
    return tracing


async def until_b_reports(mesh: Mesh, client: bool, server: bool) -> None:
    """The pushed config in force in b's sidecar (the push is asynchronous)."""
    deadline = time.monotonic() + 10
    while True:
        tracing = await proxy_tracing(workload(mesh, "b"))
        if (not tracing["client"].get("disableSpanReporting"), not tracing["server"].get("disableSpanReporting")) \
                == (client, server):
            return
        assert time.monotonic() < deadline, f"b's sidecar still has {tracing}"
        await asyncio.sleep(0.2)


async def chain_trace(mesh: Mesh, zipkin: ZipkinApi, marker: str, spans: int) -> list[dict[str, Any]]:
    """GET a:/call -> b:/call -> c:/<marker>, then the one trace holding c's SERVER span for it."""
    inner = "http://c:9080/" + marker
    middle = "http://b:9080/call?" + urllib.parse.urlencode({"url": inner})
    status, _, body = await http_get(mesh.cluster.node, workload(mesh, "a").net.ip, 9080,
                                     "/call?" + urllib.parse.urlencode({"url": middle}))
    assert status == 200 and json.loads(body)["status"] == 200, body
    session, url = zipkin
    deadline = time.monotonic() + 15
    while True:
        traces = await zipkin_traces(session, url, "c.default")
        mine = [trace for trace in traces
                if any(span["tags"].get("http.url", "").endswith("/" + marker) for span in trace)]
        if mine and len(mine[0]) >= spans:
            return mine[0]
        assert time.monotonic() < deadline, f"no trace of {spans} spans for {marker}: {mine}"
        await asyncio.sleep(0.3)


def shape(trace: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(service, kind, the parent's service and kind) per span; every parent must be a reported span."""
    by_id = {span["id"]: span for span in trace}
    assert len(by_id) == len(trace), "two spans share an id"
    assert len({span["traceId"] for span in trace}) == 1
    rows = []
    for span in trace:
        parent_id = span.get("parentId")
        if parent_id is None:
            parent = "-"
        else:
            assert parent_id in by_id, f"orphan: {span['localEndpoint']['serviceName']} {span['kind']} " \
                                       f"has parent {parent_id}, which no reported span has"
            parent = f"{by_id[parent_id]['localEndpoint']['serviceName']} {by_id[parent_id]['kind']}"
        rows.append((span["localEndpoint"]["serviceName"], span["kind"], parent))
    return sorted(rows)


# (b's silent directions, what b still reports as (client, server), the trace's shape): every parent reported.
CHAINS = {
    "b silent both ways: c joins a's CLIENT span across b": ("CLIENT_AND_SERVER", (False, False), [
        ("a.default", "CLIENT", "a.default SERVER"),
        ("a.default", "SERVER", "-"),
        ("c.default", "SERVER", "a.default CLIENT"),
    ]),
    "b reports only SERVER: c joins it": ("CLIENT", (False, True), [
        ("a.default", "CLIENT", "a.default SERVER"),
        ("a.default", "SERVER", "-"),
        ("b.default", "SERVER", "a.default CLIENT"),
        ("c.default", "SERVER", "b.default SERVER"),
    ]),
    "b reports only CLIENT: it joins a's CLIENT span": ("SERVER", (True, False), [
        ("a.default", "CLIENT", "a.default SERVER"),
        ("a.default", "SERVER", "-"),
        ("b.default", "CLIENT", "a.default CLIENT"),
        ("c.default", "SERVER", "b.default CLIENT"),
    ]),
}


@pytest.mark.parametrize("case", list(CHAINS))
async def test_a_middle_hop_that_reports_nothing_leaves_no_orphans(mesh: Mesh, zipkin: ZipkinApi, case: str) -> None:
    mode, (client, server), expected = CHAINS[case]
    mesh.control.apply_telemetry(silent_b(mode))
    await until_b_reports(mesh, client=client, server=server)
    trace = await chain_trace(mesh, zipkin, f"silent-{mode.lower()}", len(expected))
    assert shape(trace) == expected
