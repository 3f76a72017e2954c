"""Two plain apps in netns pods with real injected sidecars: transparent capture end to end.

The pods' processes come from the injected pod spec, their configs from the operator's code,
their capture rules from `tracemesh iptables` as the init container runs it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from netns_cluster import NODE_IP, Cluster
from netns_mesh import Mesh, load_yaml, wait_for_traces, zipkin_traces
from netns_net import open_connection
from netns_pods import Kubelet, RunningPod, container_argv, exec_in_pod, http_get

from tracemesh_sidecar.iptables import count_our_rules

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]

APPS = Path(__file__).with_name("netns_apps.py")
APP_USER = {"runAsUser": 1000, "runAsGroup": 1000}


def app_container(name: str, kind: str, port: int, *extra: str) -> dict[str, Any]:
    return {"name": name, "image": "netns-apps", "command": ["python", str(APPS), kind, str(port), *extra],
            "ports": [{"containerPort": port}], "securityContext": APP_USER}


def app_pod(app: str, containers: list[dict[str, Any]], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{app}-netns", "namespace": "default", "labels": {"app": app, "version": "v1"},
                         "annotations": annotations or {}},
            "spec": {"containers": containers}}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(cluster: Cluster, kubelet: Kubelet) -> AsyncIterator[Mesh]:
    built = Mesh(cluster, kubelet, load_yaml("samples/bookinfo/meshconfig.yaml")["spec"])
    built.control.apply_telemetry(load_yaml("samples/bookinfo/telemetry.yaml"))
    built.add_workload(app_pod("a", [app_container("app", "http", 9080)],
                               {"traffic.sidecar.istio.io/excludeOutboundPorts": "9001"}))
    built.add_workload(app_pod("b", [app_container("app", "http", 9080), app_container("echo", "echo", 9000),
                                     app_container("echo-excluded", "echo", 9001)],
                               {"traffic.sidecar.istio.io/excludeInboundPorts": "9001"}))
    built.add_workload(app_pod("c", [app_container("app", "http", 9080, "--no-propagate")]))
    built.add_service("a", "default", [(9080, 9080)], {"app": "a"})
    built.add_service("b", "default", [(9080, 9080), (9000, 9000), (9001, 9001)], {"app": "b"})
    built.add_service("c", "default", [(9080, 9080)], {"app": "c"})
    try:
        await built.start()
        yield built
    finally:
        await built.close()



def workload(mesh: Mesh, app: str) -> RunningPod:
    return next(pod for pod in mesh.workloads if pod.net.labels["app"] == app)


def by_kind(trace: list[dict[str, Any]], kind: str, service: str) -> dict[str, Any]:
    matches = [span for span in trace if span.get("kind") == kind and span["localEndpoint"]["serviceName"] == service]
    assert len(matches) == 1, f"{kind} spans of {service}: {len(matches)} in {json.dumps(trace)[:2000]}"
    return matches[0]


async def call(mesh: Mesh, app: str, url: str) -> dict[str, Any]:
    """A request from the node into `app`'s pod (like a kubelet or an ingress would send), asking it to call `url`."""
    status, _, body = await http_get(mesh.cluster.node, workload(mesh, app).net.ip, 9080, f"/call?url={url}")
    assert status == 200, body
    answer: dict[str, Any] = json.loads(body)
    return answer


async def test_http_is_captured_on_both_sides_and_traced_as_client_and_server(
        mesh: Mesh, zipkin: tuple[aiohttp.ClientSession, str], summary: list[str]) -> None:
    a, b = workload(mesh, "a"), workload(mesh, "b")
    answer = await call(mesh, "a", "http://b:9080/hello")
    assert answer["status"] == 200
    seen_by_b = json.loads(answer["body"])
    # B's app was reached by its own sidecar (loopback), with the trace context A's sidecar added.
    assert seen_by_b["peer"] == "127.0.0.1"
    assert "x-b3-traceid" in seen_by_b["headers"] and "x-request-id" in seen_by_b["headers"]

    session, url = zipkin
    traces = await wait_for_traces(session, url, "b.default", 1, [3])
    trace = traces[0]
    a_server = by_kind(trace, "SERVER", "a.default")
    a_client = by_kind(trace, "CLIENT", "a.default")
    b_server = by_kind(trace, "SERVER", "b.default")
    assert a_client["name"] == "b.default.svc.cluster.local:9080/*"
    assert b_server["name"] == "b.default.svc.cluster.local:9080/*"
    assert a_client["parentId"] == a_server["id"] and b_server["parentId"] == a_client["id"]
    assert {span["traceId"] for span in trace} == {a_server["traceId"]}
    assert a_server["localEndpoint"]["ipv4"] == a_client["localEndpoint"]["ipv4"] == a.net.ip
    assert b_server["localEndpoint"]["ipv4"] == b.net.ip
    assert b_server["tags"]["peer.address"].split(":")[0] == a.net.ip
    assert a_server["tags"]["peer.address"].split(":")[0] == NODE_IP
    assert a_client["tags"]["upstream_cluster"] == "outbound|9080||b.default.svc.cluster.local"
    assert b_server["tags"]["upstream_cluster"] == "inbound|9080||"
    summary.append(f"plain apps through both sidecars: 2 pods, 1 trace, {len(trace)} spans checked")


async def stat(pod: RunningPod, name: str) -> int:
    reader, writer = await open_connection(pod.net.netns, "127.0.0.1", 15000)
    writer.write(b"GET /stats HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
    text = (await reader.read(-1)).decode()
    writer.close()
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(float(value))
    return 0


async def test_non_http_passes_through_both_sidecars_untouched(mesh: Mesh) -> None:
    a = workload(mesh, "a")
    before = await stat(a, "outbound.downstream_cx_total")
    done = exec_in_pod(a.net, ["python", str(APPS), "send", "b", "9000"], uid=1000)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["peer=127.0.0.1", "True"]  # through B's sidecar, bytes intact
    assert await stat(a, "outbound.downstream_cx_total") == before + 1  # and through A's


async def test_excluded_ports_bypass_both_sidecars(mesh: Mesh) -> None:
    a = workload(mesh, "a")
    before = await stat(a, "outbound.downstream_cx_total")
    done = exec_in_pod(a.net, ["python", str(APPS), "send", "b", "9001"], uid=1000)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == [f"peer={a.net.ip}", "True"]  # B's app saw A itself
    assert await stat(a, "outbound.downstream_cx_total") == before


async def test_an_app_that_drops_the_headers_gives_separate_traces_not_wrong_ones(
        mesh: Mesh, zipkin: tuple[aiohttp.ClientSession, str]) -> None:
    answer = await call(mesh, "c", "http://b:9080/from-c")
    assert answer["status"] == 200
    session, url = zipkin
    inbound = await wait_for_traces(session, url, "c.default", 2, [1, 2])
    server_only = [trace for trace in inbound if len(trace) == 1]
    client_rooted = [trace for trace in inbound if len(trace) == 2]
    assert len(server_only) == 1 and len(client_rooted) == 1
    c_server = by_kind(server_only[0], "SERVER", "c.default")
    c_client = by_kind(client_rooted[0], "CLIENT", "c.default")
    b_server = by_kind(client_rooted[0], "SERVER", "b.default")
    assert "parentId" not in c_server and "parentId" not in c_client  # two roots, no made-up parent
    assert b_server["parentId"] == c_client["id"] and c_client["traceId"] != c_server["traceId"]


async def test_rerunning_the_init_container_keeps_one_set_of_rules_and_traffic_flowing(mesh: Mesh) -> None:
    b = workload(mesh, "b")
    init = next(c for c in b.body["spec"]["initContainers"] if c["name"] == "istio-init")
    done = exec_in_pod(b.net, container_argv(init))
    assert done.returncode == 0, done.stderr
    saved = exec_in_pod(b.net, ["iptables-save", "-t", "nat"]).stdout
    assert count_our_rules(saved)["jumps"] == 2
    assert (await call(mesh, "a", "http://b:9080/again"))["status"] == 200


async def test_an_app_calling_its_own_pod_ip_goes_out_and_back_in_through_its_sidecar(
        mesh: Mesh, zipkin: tuple[aiohttp.ClientSession, str]) -> None:
    """The one loopback case that is captured: app -> own pod IP leaves through the outbound
    listener, and the proxy's hairpin to its own pod IP is steered to the inbound one."""
    a = workload(mesh, "a")
    answer = await call(mesh, "a", f"http://{a.net.ip}:9080/self")
    assert answer["status"] == 200 and json.loads(answer["body"])["peer"] == "127.0.0.1"
    session, url = zipkin
    deadline = time.monotonic() + 10
    while True:
        traces = await zipkin_traces(session, url, "a.default")
        selves = [trace for trace in traces if len(trace) == 3 and any(
            span.get("kind") == "CLIENT" and span["tags"].get("http.url", "").endswith("/self") for span in trace)]
        if selves or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert len(selves) == 1, f"no complete trace of the call to {a.net.ip}:9080/self"
    assert sorted(span["kind"] for span in selves[0]) == ["CLIENT", "SERVER", "SERVER"]
    assert {span["localEndpoint"]["ipv4"] for span in selves[0]} == {a.net.ip}
