"""`tracemesh dashboard`: istioctl's rules for finding the UI's pod (against kmock, with the labels of Istio's
own addon manifests), the local listener and its byte pumping, the port choice, local mode, clear errors.

kmock serves no port-forward: `kube_portforward.api_server_front` adds the API server's port-forward
websocket protocol in front of it, so the official client's `kubernetes.stream.portforward` is run for
real. Not covered: a real API server and kubelet.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kmock
import pytest
from kube_portforward import api_server_front

from tracemesh_cli.dashboard import DASHBOARDS, find_pod
from tracemesh_cli.kube_client import Cluster
from tracemesh_cli.main import main
from tracemesh_cli.port_forward import kube_tunnel, listen, local_port_preferences, serve
from tracemesh_operator.kmock_cluster import write_kubeconfig

# The pod template labels of Istio's addons (istio/istio samples/addons/jaeger.yaml, prometheus.yaml,
# extras/zipkin.yaml), all Deployments in istio-system.
ISTIO_ADDON_PODS = {
    "jaeger": {"app": "jaeger", "sidecar.istio.io/inject": "false"},
    "prometheus": {"app.kubernetes.io/component": "server", "app.kubernetes.io/name": "prometheus",
                   "app.kubernetes.io/instance": "prometheus", "app.kubernetes.io/part-of": "prometheus",
                   "sidecar.istio.io/inject": "false"},
    "zipkin": {"app": "zipkin", "sidecar.istio.io/inject": "false"},
}


def pod(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "ui"}]}}


@pytest.fixture
async def pods_cluster(kmock: kmock.KubernetesEmulator, tmp_path: Path) -> Cluster:
    kmock.resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", namespaced=True, verbs={"list", "get", "create"})
    return Cluster.connect(str(write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url))))


async def add_pod(emulator: kmock.KubernetesEmulator, body: dict[str, Any]) -> None:
    async with emulator.post(f"/api/v1/namespaces/{body['metadata']['namespace']}/pods", json=body) as response:
        assert response.status == 200, await response.text()


async def found(cluster: Cluster, name: str, namespaces: list[str]) -> tuple[str, str] | None:
    selector = DASHBOARDS[name].selector
    return await asyncio.to_thread(find_pod, namespaces, selector,
                                   lambda namespace: cluster.list("v1", "Pod", namespace, selector))


@pytest.mark.parametrize("name", sorted(ISTIO_ADDON_PODS))
async def test_istios_own_addon_pods_are_found_by_istioctls_selectors(
        name: str, kmock: kmock.KubernetesEmulator, pods_cluster: Cluster) -> None:
    for other, labels in ISTIO_ADDON_PODS.items():
        await add_pod(kmock, pod(f"{other}-5d8f9-abcde", "istio-system", labels))
    assert await found(pods_cluster, name, ["istio-system", "default"]) == (f"{name}-5d8f9-abcde", "istio-system")


async def test_the_istio_namespace_is_looked_in_before_the_namespace(
        kmock: kmock.KubernetesEmulator, pods_cluster: Cluster) -> None:
    await add_pod(kmock, pod("jaeger-in-tracing", "tracing", ISTIO_ADDON_PODS["jaeger"]))
    assert await found(pods_cluster, "jaeger", ["istio-system", "tracing"]) == ("jaeger-in-tracing", "tracing")
    await add_pod(kmock, pod("jaeger-in-istio", "istio-system", ISTIO_ADDON_PODS["jaeger"]))
    assert await found(pods_cluster, "jaeger", ["istio-system", "tracing"]) == ("jaeger-in-istio", "istio-system")
    # Istio's jaeger.yaml also has a Service named zipkin, but no app=zipkin pod: istioctl finds none either.
    assert await found(pods_cluster, "zipkin", ["istio-system", "tracing"]) is None


def test_ui_ports_are_istioctls_defaults() -> None:
    assert {name: d.ui_port for name, d in DASHBOARDS.items()} == {"zipkin": 9411, "jaeger": 16686, "prometheus": 9090}


# -- the local end of the port-forward ---------------------------------------------------------------


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"ui at {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def ui() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_every_connection_to_the_listener_is_carried_through_its_own_tunnel(ui: int) -> None:
    tunnels: list[int] = []

    def open_tunnel() -> socket.socket:
        tunnels.append(ui)
        return socket.create_connection(("127.0.0.1", ui))

    listener = listen("localhost", [0])
    stop = threading.Event()
    server = threading.Thread(target=serve, args=(listener, open_tunnel, stop), daemon=True)
    server.start()
    try:
        port = listener.getsockname()[1]
        for path in ("/", "/zipkin/api/v2/services"):
            assert fetch(f"http://127.0.0.1:{port}{path}") == f"ui at {path}"
        assert len(tunnels) == 2
    finally:
        stop.set()
        server.join(5)
        listener.close()


def test_the_remote_port_is_preferred_and_a_taken_one_falls_back_to_a_free_port() -> None:
    assert local_port_preferences(0, 9411) == [9411, 0]
    assert local_port_preferences(8080, 9411) == [8080]  # asked for: that one or an error
    with listen("127.0.0.1", [0]) as taken:
        busy = taken.getsockname()[1]
        with listen("localhost", [busy, 0]) as fallback:
            assert fallback.getsockname()[1] not in (busy, 0)
        with pytest.raises(OSError, match=f"127.0.0.1:{busy}"):
            listen("localhost", [busy])


async def test_a_tunnel_the_api_server_refuses_fails_that_connection_only(
        kmock: kmock.KubernetesEmulator, pods_cluster: Cluster) -> None:
    """kmock has no port-forward endpoint: the official client's websocket is refused, and reported."""
    errors: list[str] = []
    listener = listen("localhost", [0])
    stop = threading.Event()
    tunnel = kube_tunnel(pods_cluster.api, "zipkin-1", "istio-system", 9411)
    server = threading.Thread(target=serve, args=(listener, tunnel, stop, errors.append), daemon=True)
    server.start()
    try:
        def connect_and_read() -> bytes:
            with socket.create_connection(listener.getsockname(), timeout=5) as connection:
                connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                try:
                    return connection.recv(100)
                except ConnectionResetError:  # closed with the request unread: a reset, as good as a close
                    return b""

        assert await asyncio.to_thread(connect_and_read) == b""  # closed, not hung
        assert errors and "cannot open the port-forward stream" in errors[0]
        assert server.is_alive()  # the listener goes on
    finally:
        stop.set()
        await asyncio.to_thread(server.join, 5)
        listener.close()


async def test_the_ui_is_reached_through_the_api_servers_port_forward(
        kmock: kmock.KubernetesEmulator, tmp_path: Path, ui: int) -> None:
    """The official client's port-forward websocket (kubernetes.stream.portforward), one per connection."""
    pods = {("istio-system", "jaeger-5d8f9-abcde", 16686): ("127.0.0.1", ui)}
    async with api_server_front(str(kmock.url), pods) as front:
        cluster = Cluster.connect(str(write_kubeconfig(tmp_path / "front", front)))
        listener = listen("localhost", local_port_preferences(0, 0))
        stop = threading.Event()
        tunnel = kube_tunnel(cluster.api, "jaeger-5d8f9-abcde", "istio-system", 16686)
        server = threading.Thread(target=serve, args=(listener, tunnel, stop), daemon=True)
        server.start()

        base = f"http://127.0.0.1:{listener.getsockname()[1]}"
        try:
            assert await asyncio.to_thread(fetch, f"{base}/search") == "ui at /search"
            assert await asyncio.to_thread(fetch, f"{base}/api/services") == "ui at /api/services"
        finally:
            stop.set()
            await asyncio.to_thread(server.join, 5)
            listener.close()


async def test_dashboard_jaeger_finds_istios_addon_pod_and_forwards_until_ctrl_c(
        kmock: kmock.KubernetesEmulator, pods_cluster: Cluster, tmp_path: Path, ui: int) -> None:
    """The whole command, as a user runs it, against kmock behind the port-forward front."""
    await add_pod(kmock, pod("jaeger-5d8f9-abcde", "istio-system", ISTIO_ADDON_PODS["jaeger"]))
    pods = {("istio-system", "jaeger-5d8f9-abcde", 16686): ("127.0.0.1", ui)}
    async with api_server_front(str(kmock.url), pods) as front:
        kubeconfig = write_kubeconfig(tmp_path / "front", front)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tracemesh_cli.main", "dashboard", "jaeger", "--kubeconfig", str(kubeconfig),
            "--browser=false", "--address", "127.0.0.1", "-p", str(free_port()),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            assert process.stdout is not None
            url = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
            assert url.startswith("http://127.0.0.1:")
            assert await asyncio.to_thread(fetch, f"{url}/search") == "ui at /search"
        finally:
            process.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(process.communicate(), 20)
        assert process.returncode == 0, err.decode()
        assert "port-forward to Jaeger pod istio-system/jaeger-5d8f9-abcde:16686" in err.decode()


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def free_port() -> int:
    with listen("127.0.0.1", [0]) as probe:
        return int(probe.getsockname()[1])


# -- the command -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "path"), [("jaeger", "/"), ("zipkin", "/zipkin/")])
def test_local_mode_prints_the_local_collectors_trace_ui(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str], ui: int,
                                                         name: str, path: str) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    assert main(["dashboard", name, "--ui-port", str(ui), "--browser=false"]) == 0
    output = capsys.readouterr()
    assert output.out.strip() == f"http://127.0.0.1:{ui}{path}"
    assert "local collector" in output.err and "skipping opening a browser" in output.err


def test_local_mode_opens_the_trace_ui_in_a_browser(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str], ui: int) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    assert main(["dashboard", "zipkin", "--ui-port", str(ui), "--browser"]) == 0
    assert opened == [f"http://127.0.0.1:{ui}/zipkin/"]
    assert capsys.readouterr().out.strip() == opened[0]


def test_no_cluster_and_no_local_collector_says_which_kubeconfig(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    with listen("127.0.0.1", [0]) as closed:
        port = closed.getsockname()[1]
    assert main(["dashboard", "zipkin", "--ui-port", str(port), "--browser=false"]) == 1
    assert f"{tmp_path / 'none'}" in capsys.readouterr().err


async def test_no_addon_pod_is_an_error_naming_the_selector_and_namespaces(
        pods_cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = str(tmp_path / "kubeconfig")
    assert await asyncio.to_thread(main, ["dashboard", "prometheus", "--kubeconfig", kubeconfig, "-n", "monitoring",
                                          "--browser=false"]) == 1
    assert ("no pods found with selector app.kubernetes.io/name=prometheus in istio-system or monitoring"
            in capsys.readouterr().err)


@pytest.mark.parametrize("argv", [["grafana"], ["zipkin", "--port", "70000"], ["zipkin", "--browser=maybe"]])
def test_bad_arguments_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        status = main(["dashboard", *argv])
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    assert status == 2
    assert capsys.readouterr().err
