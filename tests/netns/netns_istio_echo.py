"""The echo deployment of Istio's tracing integration tests, as netns pods (istio/istio
`tests/integration/telemetry/tracing/tracing.go`, TestSetup and SendTraffic).

Istio deploys `client-<cluster>` (no service ports) and `server` (port `http`: Service port 80 on
workload port 8090; port `tcp`: 9000) in an injected namespace `echo-…`, and calls the server from
the client with Istio's echo ForwardEcho command. Here both run the plain test app (netns_apps.py):
the client's app listens on a port excluded from inbound capture, as the echo's command port is, so
the client's CLIENT span is the trace's root, as in Istio's WantTraceRoot.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from istio_tracing import CLUSTER_NAME, SERVER_HTTP_PORT, SERVER_TCP_PORT, SERVER_WORKLOAD_PORT
from netns_mesh import REPO, Mesh
from netns_pods import RunningPod, http_get

from tracemesh_cli.istio_operator import API_VERSION, KIND, read_istio_operator

APPS = Path(__file__).with_name("netns_apps.py")
NAMESPACE = "echo-1"
CLIENT = f"client-{CLUSTER_NAME}"
CLIENT_COMMAND_PORT = 7070  # the echo's command port, which Istio's echo excludes from capture
APP_USER = {"runAsUser": 1000, "runAsGroup": 1000}
ISTIO_FIXTURES = REPO / "tests/fixtures/istio/tests/integration/telemetry/tracing"


def istio_fixture(relative: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ISTIO_FIXTURES / relative).read_text())
    return document


def control_plane_mesh_spec(suite: str) -> dict[str, Any]:
    """The MeshConfig spec `tracemesh install` makes of the suite's ControlPlaneValues (an IstioOperator spec)."""
    operator = {"apiVersion": API_VERSION, "kind": KIND, "spec": istio_fixture(f"{suite}/control-plane-values.yaml")}
    spec: dict[str, Any] = read_istio_operator([(suite, operator)], [], {"spec": {}}).meshconfig["spec"]
    return spec


def _container(name: str, kind: str, port: int) -> dict[str, Any]:
    return {"name": name, "image": "netns-apps", "command": ["python", str(APPS), kind, str(port)],
            "ports": [{"containerPort": port}], "securityContext": APP_USER}


def _pod(app: str, containers: list[dict[str, Any]], annotations: Mapping[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{app}-netns", "namespace": NAMESPACE, "labels": {"app": app, "version": "v1"},
                         "annotations": dict(annotations)},
            "spec": {"containers": containers}}


def deploy_echo(mesh: Mesh) -> None:
    """TestSetup: the injected namespace, `client-<cluster>` and `server` with its two ports."""
    mesh.namespace_labels[NAMESPACE] = {"istio-injection": "enabled"}
    mesh.add_workload(_pod(CLIENT, [_container("app", "http", CLIENT_COMMAND_PORT)],
                           {"traffic.sidecar.istio.io/excludeInboundPorts": str(CLIENT_COMMAND_PORT)}))
    mesh.add_workload(_pod("server", [_container("app", "http", SERVER_WORKLOAD_PORT),
                                      _container("tcp", "echo", SERVER_TCP_PORT)], {}))
    mesh.add_service("server", NAMESPACE, [(SERVER_HTTP_PORT, SERVER_WORKLOAD_PORT),
                                           (SERVER_TCP_PORT, SERVER_TCP_PORT)], {"app": "server"})


def echo_pod(mesh: Mesh, app: str) -> RunningPod:
    return next(pod for pod in mesh.workloads if pod.net.namespace == NAMESPACE and pod.net.labels["app"] == app)


async def send_traffic(mesh: Mesh, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """SendTraffic: the client calls the server's `http` port with `headers`; returns what the server's app saw."""
    client = echo_pod(mesh, CLIENT)
    query = [("url", f"http://server:{SERVER_HTTP_PORT}/")]
    query += [("header", f"{name}:{value}") for name, value in (headers or {}).items()]
    status, _, body = await http_get(mesh.cluster.node, client.net.ip, CLIENT_COMMAND_PORT,
                                     "/call?" + urllib.parse.urlencode(query))
    assert status == 200, body
    answer: dict[str, Any] = json.loads(body)
    assert answer["status"] == 200, answer
    seen: dict[str, Any] = json.loads(answer["body"])
    return seen
