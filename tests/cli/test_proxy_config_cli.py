"""`tracemesh proxy-config tracing|clusters|listeners`: the tables and sections it prints from a sidecar's
config_dump, the dump fetched over a tunnel to the admin port, and the pod checks against kmock (a pod
injected under the old container name `tracemesh-proxy` is still a sidecar)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from kube_portforward import api_server_front

from tracemesh_cli.main import main
from tracemesh_cli.proxy_config import NoConfigDump, fetch_config_dump, pod_and_namespace
from tracemesh_operator.kmock_cluster import write_kubeconfig
from tracemesh_sidecar.config import dump_proxy_config, parse_proxy_config

# What the sidecar of Bookinfo's reviews-v2 answers on 127.0.0.1:15000/config_dump (abridged registry).
DOCUMENT: dict[str, Any] = {
    "version": "12",
    "node": {"podName": "reviews-v2-7f9c-x2", "namespace": "default", "podIP": "10.244.0.7",
             "canonicalService": "reviews", "canonicalRevision": "v2"},
    "inbound": {"ports": [{"port": 9080, "appPort": 9080, "serviceHost": "reviews.default.svc.cluster.local"}]},
    "outbound": {"services": [
        {"host": "ratings.default.svc.cluster.local", "port": 9080, "endpoints": ["10.244.0.9:9080"],
         "addresses": ["10.96.12.4"]},
        {"host": "zipkin.istio-system.svc.cluster.local", "port": 9411,
         "endpoints": ["10.244.0.3:9411", "10.244.0.4:9411"], "addresses": ["10.96.0.41"]}]},
    "tracing": {"client": {"provider": "zipkin", "samplingPercentage": 100},
                "server": {"provider": "zipkin", "samplingPercentage": 100, "disableSpanReporting": True,
                           "customTags": {"team": {"literal": {"value": "bookinfo"}}}}},
    "providers": [{"name": "zipkin", "zipkin": {"service": "zipkin.istio-system.svc.cluster.local", "port": 9411}}],
}
CONFIG_DUMP = dump_proxy_config(parse_proxy_config(DOCUMENT))


@pytest.fixture
def dump_file(tmp_path: Path) -> Path:
    path = tmp_path / "config_dump.json"
    path.write_text(json.dumps(CONFIG_DUMP))
    return path


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_tracing_shows_each_direction_and_the_provider(dump_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proxy-config", "tracing", "-f", str(dump_file)]) == 0
    out = capsys.readouterr().out
    directions, providers = out.split("\n\n")
    assert rows(directions) == [
        ["DIRECTION", "PROVIDER", "SAMPLING", "REPORTING", "PROPAGATION", "CUSTOM", "TAGS"],
        ["outbound", "(client)", "zipkin", "100%", "on", "on", "-"],
        ["inbound", "(server)", "zipkin", "100%", "off", "on", "team"],
    ]
    assert rows(providers)[1] == ["zipkin", "zipkin", "http://zipkin.istio-system.svc.cluster.local:9411/api/v2/spans",
                                  "B3"]


def test_clusters_use_envoys_names_and_directions(dump_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proxy-config", "clusters", "-f", str(dump_file)]) == 0
    assert rows(capsys.readouterr().out) == [
        ["SERVICE", "FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "ENDPOINTS"],
        ["ratings.default.svc.cluster.local", "9080", "-", "outbound", "EDS", "1"],
        ["zipkin.istio-system.svc.cluster.local", "9411", "-", "outbound", "EDS", "2"],
        ["reviews.default.svc.cluster.local", "9080", "-", "inbound", "STATIC", "127.0.0.1:9080"],
    ]


def test_listeners_show_the_capture_ports_and_where_they_lead(dump_file: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proxy-config", "listeners", "-f", str(dump_file)]) == 0
    table = capsys.readouterr().out
    assert rows(table)[1:] == [
        ["10.96.12.4", "9080", "ALL", "Cluster:", "outbound|9080||ratings.default.svc.cluster.local"],
        ["10.96.0.41", "9411", "ALL", "Cluster:", "outbound|9411||zipkin.istio-system.svc.cluster.local"],
        ["127.0.0.1", "15001", "ALL", "PassthroughCluster", "(captured", "outbound)"],
        ["0.0.0.0", "15006", "dst", "port", "9080", "Cluster:", "inbound|9080||"],
        ["0.0.0.0", "15006", "ALL", "InboundPassthroughCluster"],
        ["127.0.0.1", "15000", "ALL", "admin:", "/config_dump", "/stats", "/clusters"],
        ["0.0.0.0", "15021", "ALL", "health:", "/healthz/ready"],
        ["0.0.0.0", "15090", "ALL", "prometheus:", "/stats/prometheus"],
    ]


@pytest.mark.parametrize(("view", "keys"), [("tracing", ["tracing", "providers"]),
                                            ("clusters", ["outbound", "inbound"]), ("listeners", ["listeners"])])
@pytest.mark.parametrize("output", ["json", "yaml"])
def test_json_and_yaml_print_the_config_dumps_sections(view: str, keys: list[str], output: str, dump_file: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proxy-config", view, "-f", str(dump_file), "-o", output]) == 0
    printed = capsys.readouterr().out
    loaded = json.loads(printed) if output == "json" else yaml.safe_load(printed)
    assert loaded == {key: CONFIG_DUMP[key] for key in keys}


def test_a_file_that_is_not_a_proxy_config_is_refused_naming_the_field(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps({"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"}]}))
    assert main(["proxy-config", "clusters", "-f", str(path)]) == 1
    assert "not a tracemesh proxy config" in capsys.readouterr().err


def test_pod_names_are_istioctls_name_dot_namespace() -> None:
    assert pod_and_namespace("reviews-v2-7f9c-x2.bookinfo", "default") == ("reviews-v2-7f9c-x2", "bookinfo")
    assert pod_and_namespace("reviews-v2-7f9c-x2", "default") == ("reviews-v2-7f9c-x2", "default")


# -- the dump, over a tunnel to the admin port -------------------------------------------------------


class _Admin(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = (200, json.dumps(CONFIG_DUMP)) if self.path == "/config_dump" else (404, "not found")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def admin() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Admin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_config_dump_is_fetched_over_the_tunnel(admin: int) -> None:
    assert fetch_config_dump(lambda: socket.create_connection(("127.0.0.1", admin))) == CONFIG_DUMP


def test_a_tunnel_that_cannot_open_is_a_clear_error() -> None:
    def refused() -> socket.socket:
        raise RuntimeError("Handshake status 404 Not Found")

    with pytest.raises(NoConfigDump, match="cannot port-forward to the admin port 15000: Handshake status 404"):
        fetch_config_dump(refused)


# -- the pod, against kmock --------------------------------------------------------------------------


@pytest.fixture
async def kubeconfig(kmock: kmock.KubernetesEmulator, tmp_path: Path) -> Path:
    kmock.resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", namespaced=True, verbs={"list", "get", "create"})
    for name, containers in (("plain-1", [{"name": "app"}]),
                             ("legacy-1", [{"name": "tracemesh-proxy"}, {"name": "app"}]),
                             ("reviews-v2-7f9c-x2", [{"name": "istio-proxy"}, {"name": "reviews"}])):
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "bookinfo"},
                "spec": {"containers": containers}}
        async with kmock.post("/api/v1/namespaces/bookinfo/pods", json=body) as response:
            assert response.status == 200
    return write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url))


@pytest.mark.parametrize(("pod", "words"), [
    ("missing.bookinfo", "pod bookinfo/missing not found"),
    ("plain-1.bookinfo", "has no sidecar (no istio-proxy container)"),
    # Recognised as injected (old container name): on to the port-forward, which kmock does not serve.
    ("legacy-1.bookinfo", "cannot port-forward to the admin port 15000"),
])
async def test_the_pod_must_exist_and_have_a_sidecar(pod: str, words: str, kubeconfig: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert await asyncio.to_thread(main, ["proxy-config", "tracing", pod, "--kubeconfig", str(kubeconfig)]) == 1
    assert words in capsys.readouterr().err


async def test_the_sidecars_config_dump_is_read_through_the_api_servers_port_forward(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path, admin: int, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """End to end with the official client's port-forward websocket, to the pod's admin port 15000."""
    pods = {("bookinfo", "reviews-v2-7f9c-x2", 15000): ("127.0.0.1", admin)}
    async with api_server_front(str(kmock.url), pods) as front:
        through_front = write_kubeconfig(tmp_path / "front-kubeconfig", front)
        assert await asyncio.to_thread(main, ["proxy-config", "clusters", "reviews-v2-7f9c-x2", "-n", "bookinfo",
                                              "--kubeconfig", str(through_front)]) == 0
    assert rows(capsys.readouterr().out)[1] == ["ratings.default.svc.cluster.local", "9080", "-", "outbound", "EDS",
                                                "1"]
