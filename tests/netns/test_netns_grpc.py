"""gRPC and h2c through two injected sidecars in netns pods (issue 12's acceptance).

A grpcio client exec'd in the `client` pod calls grpc/grpc's helloworld Greeter in the `greeter` pod
by its cluster name: the client's sidecar captures the call outbound, the greeter's inbound. Each call
must give one trace of a CLIENT span (client's sidecar) and a SERVER span (greeter's), tagged as
Envoy's tracers tag gRPC (envoyproxy/envoy source/common/tracing/http_tracer_impl.cc:
finalizeDownstreamSpan, addGrpcRequestTags, addGrpcResponseTags). curl, with prior knowledge and
with `Upgrade: h2c`, does the same against an h2c app behind the greeter's sidecar; and with HTTP/1.1
against a Service port named `http2`, which Istio's protocol selection speaks HTTP/2 to upstream.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from netns_cluster import Cluster
from netns_grpc_apps import SAY_HELLO, SAY_HELLO_STREAM_REPLY, encode_string, reply_texts
from netns_mesh import Mesh, load_yaml
from netns_pods import Kubelet, exec_in_pod

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]

GRPC_APPS = Path(__file__).with_name("netns_grpc_apps.py")
APP_UID = 1000
GREETER_PORT = 50051
H2C_PORT = 8080
DECLARED_HTTP2_PORT = 8081  # another h2c app, behind a Service port named `http2`
GREETER_FQDN = "greeter.default.svc.cluster.local"
# grpc-status codes Envoy counts as the upstream's fault and tags error=true (addGrpcResponseTags, after
# envoyproxy/envoy#18877); the others (NOT_FOUND, INVALID_ARGUMENT, ...) are the caller's and are not.
ENVOY_ERROR_CODES = {"UNKNOWN": 2, "DEADLINE_EXCEEDED": 4, "UNIMPLEMENTED": 12, "RESOURCE_EXHAUSTED": 8,
                     "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15}
CALLER_ERROR_CODES = {"NOT_FOUND": 5}
GRPC_TIMEOUT = re.compile(r"^\d{1,8}[HMSmun]$")  # the gRPC spec's Timeout: TimeoutValue TimeoutUnit


def app_pod(app: str, containers: list[tuple[str, list[str], int]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{app}-netns", "namespace": "default", "labels": {"app": app, "version": "v1"}},
            "spec": {"containers": [
                {"name": name, "image": "netns-grpc-apps", "command": ["python", str(GRPC_APPS), *argv],
                 "ports": [{"containerPort": port}], "securityContext": {"runAsUser": APP_UID, "runAsGroup": APP_UID}}
                for name, argv, port in containers]}}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(cluster: Cluster, kubelet: Kubelet) -> AsyncIterator[Mesh]:
    built = Mesh(cluster, kubelet, load_yaml("samples/bookinfo/meshconfig.yaml")["spec"])
    built.control.apply_telemetry(load_yaml("samples/bookinfo/telemetry.yaml"))
    built.add_workload(app_pod("client", [("app", ["h2c", str(H2C_PORT)], H2C_PORT)]))
    built.add_workload(app_pod("greeter", [("greeter", ["greeter", str(GREETER_PORT)], GREETER_PORT),
                                           ("h2c", ["h2c", str(H2C_PORT)], H2C_PORT),
                                           ("h2c-declared", ["h2c", str(DECLARED_HTTP2_PORT)], DECLARED_HTTP2_PORT)]))
    built.add_service("client", "default", [(H2C_PORT, H2C_PORT)], {"app": "client"})
    # The gRPC and one h2c port are declared as Istio's protocol selection reads them (the port name); the other
    # h2c port is left to sniffing.
    built.add_service("greeter", "default", [(port, port) for port in (GREETER_PORT, H2C_PORT, DECLARED_HTTP2_PORT)],
                      {"app": "greeter"}, port_names={GREETER_PORT: "grpc", DECLARED_HTTP2_PORT: "http2"})
    try:
        await built.start()
        yield built
    finally:
        await built.close()


async def wait_for_trace(zipkin: tuple[aiohttp.ClientSession, str], trace_id: str, spans: int,
                         timeout_s: float = 15.0) -> list[dict[str, Any]]:
    """The trace once it has at least `spans` spans (spans arrive in batches)."""
    session, url = zipkin
    deadline = time.monotonic() + timeout_s
    found: list[dict[str, Any]] = []
    while True:
        async with session.get(f"{url}/api/v2/trace/{trace_id}") as response:
            if response.status == 200:
                found = await response.json()
            else:
                assert response.status == 404, await response.text()
        if len(found) >= spans:
            return found
        assert time.monotonic() < deadline, f"trace {trace_id}: {len(found)} spans within {timeout_s}s, wanted {spans}"
        await asyncio.sleep(0.3)


def client_and_server(trace: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The client pod's CLIENT span and the greeter pod's SERVER span, the only two, the one the other's parent."""
    shape = sorted((span.get("kind", ""), span["localEndpoint"]["serviceName"]) for span in trace)
    assert shape == [("CLIENT", "client.default"), ("SERVER", "greeter.default")], json.dumps(trace)[:3000]
    client = next(span for span in trace if span["kind"] == "CLIENT")
    server = next(span for span in trace if span["kind"] == "SERVER")
    assert server["traceId"] == client["traceId"] and server.get("parentId") == client["id"]
    assert "parentId" not in client  # the exec'd caller sent no trace context: the client's sidecar started it
    return client, server


def framed(message: str) -> int:
    """Body bytes of one gRPC message on the wire: compressed flag, 4-byte length, the protobuf message."""
    return 5 + len(encode_string(message))


def check_grpc_tags(span: dict[str, Any], call: dict[str, Any]) -> None:
    path = SAY_HELLO if call["method"] == "SayHello" else SAY_HELLO_STREAM_REPLY
    where = f"{span['kind']} span of {call['method']}({call['name']})"
    tags: dict[str, str] = span["tags"]
    assert span["name"] == f"{GREETER_FQDN}:{GREETER_PORT}/*", where
    expected = {"http.protocol": "HTTP/2", "http.method": "POST", "http.status_code": "200",
                "http.url": f"http://greeter:{GREETER_PORT}{path}", "grpc.path": path,
                "grpc.authority": f"greeter:{GREETER_PORT}", "grpc.content_type": "application/grpc",
                # Body bytes both ways: the whole stream is in one span, not a span per message.
                "request_size": str(framed(call["name"])),
                "response_size": str(sum(framed(reply) for reply in call["replies"]))}
    assert {name: tags.get(name) for name in expected} == expected, f"{where}: {tags}"
    assert GRPC_TIMEOUT.match(tags.get("grpc.timeout", "")), f"{where}: the client's deadline, {tags}"
    code = call["code"]
    status = 0 if code == "OK" else {**ENVOY_ERROR_CODES, **CALLER_ERROR_CODES}[code]
    assert tags.get("grpc.status_code") == str(status), f"{where}: {tags}"
    # grpcio's server always sends grpc-message, empty on OK; a refusal's is trailers-only (in the headers).
    assert tags.get("grpc.message") == call["details"], f"{where}: {tags}"
    assert tags.get("error") == ("true" if code in ENVOY_ERROR_CODES else None), f"{where}: {tags}"


async def test_grpc_unary_streaming_and_refused_calls_each_give_one_client_server_pair(
        mesh: Mesh, zipkin: tuple[aiohttp.ClientSession, str], summary: list[str]) -> None:
    refusals = ["INTERNAL", "NOT_FOUND"]
    done = exec_in_pod(mesh.cluster.pod("client-netns"), ["python", str(GRPC_APPS), "greet", f"greeter:{GREETER_PORT}",
                                                      "world", *refusals], uid=APP_UID, timeout_s=60)
    assert done.returncode == 0, done.stderr
    calls: list[dict[str, Any]] = json.loads(done.stdout)
    assert [(call["method"], call["code"]) for call in calls] == [
        ("SayHello", "OK"), ("SayHelloStreamReply", "OK"), ("SayHello", "INTERNAL"), ("SayHello", "NOT_FOUND")], calls
    assert calls[0]["replies"] == ["Hello world"] and calls[1]["replies"] == reply_texts("world")

    for call in calls:
        # The trace context reached the app as HTTP/2 headers, from the greeter's sidecar.
        seen = call["seen"]
        assert "x-b3-traceid" in seen and "x-request-id" in seen, call
        client, server = client_and_server(await wait_for_trace(zipkin, seen["x-b3-traceid"], 2))
        assert seen["x-b3-spanid"] == server["id"], call
        for span in (client, server):
            check_grpc_tags(span, call)
        assert client["tags"]["upstream_cluster"] == f"outbound|{GREETER_PORT}||{GREETER_FQDN}"
        assert server["tags"]["upstream_cluster"] == f"inbound|{GREETER_PORT}||"
        summary.append(f"gRPC {call['method']} -> {call['code']} through both sidecars: {len(call['replies'])} "
                       f"replies, 1 trace, CLIENT+SERVER spans with Envoy's gRPC tags checked")
    assert len({call["seen"]["x-b3-traceid"] for call in calls}) == len(calls)  # one trace per call


@pytest.mark.parametrize(("flag", "path"), [("--http2-prior-knowledge", "/curl-prior-knowledge"),
                                            ("--http2", "/curl-upgrade")])
async def test_curl_h2c_through_the_pair_gives_200_and_a_client_server_pair(
        mesh: Mesh, zipkin: tuple[aiohttp.ClientSession, str], summary: list[str], flag: str, path: str) -> None:
    done = exec_in_pod(mesh.cluster.pod("client-netns"), [
        "curl", "-sS", "--max-time", "20", flag, "-w", "\n%{http_version} %{http_code}",
        f"http://greeter:{H2C_PORT}{path}"], uid=APP_UID)
    assert done.returncode == 0, done.stderr
    body, _, versions = done.stdout.rpartition("\n")
    # curl spoke HTTP/2 to the client's sidecar (which, for --http2, took the upgrade), and the greeter's
    # sidecar spoke it to the app, with prior knowledge.
    assert versions == "2 200", done.stdout
    seen_by_app = json.loads(body)
    assert seen_by_app["protocol"] == "HTTP/2" and seen_by_app["path"] == path, seen_by_app
    assert "x-b3-traceid" in seen_by_app["headers"], f"no trace context reached the app: {seen_by_app}"
    trace_id = seen_by_app["headers"]["x-b3-traceid"]
    client, server = client_and_server(await wait_for_trace(zipkin, trace_id, 2))
    for span in (client, server):
        tags = span["tags"]
        expected = {"http.protocol": "HTTP/2", "http.method": "GET", "http.status_code": "200",
                    "http.url": f"http://greeter:{H2C_PORT}{path}", "request_size": "0",
                    "response_size": str(len(body.encode()))}
        assert {name: tags.get(name) for name in expected} == expected, f"{span['kind']}: {tags}"
        assert span["name"] == f"{GREETER_FQDN}:{H2C_PORT}/*" and "error" not in tags, f"{span['kind']}: {tags}"
        assert not [name for name in tags if name.startswith("grpc.")], f"not gRPC, yet {tags}"
    summary.append(f"curl {flag} through both sidecars: 200 over HTTP/2, 1 trace, 2 spans checked")


async def test_a_port_declared_http2_is_spoken_to_over_http2_whatever_the_client_spoke(
        mesh: Mesh, zipkin: tuple[aiohttp.ClientSession, str], summary: list[str]) -> None:
    """Istio's protocol selection: a Service port named `http2` (or `grpc`; pkg/config/protocol/instance.go
    IsHTTP2) gets HTTP/2 clusters, outbound and inbound (pilot/pkg/networking/core/cluster_builder.go
    setUpstreamProtocol), while the listener still takes the client's HTTP/1.1."""
    path = "/declared-http2"
    done = exec_in_pod(mesh.cluster.pod("client-netns"), [
        "curl", "-sS", "--max-time", "20", "--http1.1", "-w", "\n%{http_version} %{http_code}",
        f"http://greeter:{DECLARED_HTTP2_PORT}{path}"], uid=APP_UID)
    assert done.returncode == 0, done.stderr
    body, _, versions = done.stdout.rpartition("\n")
    assert versions == "1.1 200", done.stdout
    seen_by_app = json.loads(body)
    client, server = client_and_server(await wait_for_trace(zipkin, seen_by_app["headers"]["x-b3-traceid"], 2))
    # Each span tells the protocol its sidecar was spoken to in: curl's, then the client sidecar's.
    assert (client["tags"]["http.protocol"], server["tags"]["http.protocol"]) == ("HTTP/1.1", "HTTP/2")
    assert seen_by_app["protocol"] == "HTTP/2", f"the greeter's sidecar spoke {seen_by_app['protocol']} to the app"
    summary.append("curl --http1.1 to a port named http2: 200, HTTP/2 on both upstream legs, 1 trace, 2 spans checked")
