"""Istio's standard metrics and access logs from Bookinfo's sidecars, read the way a user reads them: a real
Prometheus server scraping the pods by the annotations injection put on them (netns_prometheus.py) and queried
through its own HTTP API, `promtool check metrics` on each sidecar's exposition, and the sidecars' logs.

Telemetry and MeshConfig changes go through the operator's push, live, while the sidecars run.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import netns_prometheus
import pytest
import pytest_asyncio
from netns_cluster import Cluster
from netns_mesh import Mesh, load_yaml
from netns_pods import Kubelet, RunningPod, http_get
from test_netns_bookinfo import MESH_DEFAULT, bookinfo_objects, productpage

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module"),
              pytest.mark.skipif(netns_prometheus.unavailable() is not None,
                                 reason=f"Prometheus: {netns_prometheus.unavailable()}")]

MESH_SPEC = load_yaml("samples/bookinfo/meshconfig.yaml")["spec"]
REQUESTS = 12
REVIEWS_REQUESTS = ('sum(istio_requests_total{reporter="destination",destination_canonical_service="reviews"})')
REVIEWS_DURATIONS = ('sum(istio_request_duration_milliseconds_count{reporter="destination",'
                     'destination_canonical_service="reviews"})')
# pilot/pkg/model/telemetry_logging.go EnvoyTextLogFormat, field by field (quoted fields may hold spaces).
ISTIO_TEXT_LINE = re.compile(
    r'^\[(?P<start_time>\S+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>\S+)" (?P<response_code>\d+) '
    r'(?P<response_flags>\S+) (?P<response_code_details>\S+) (?P<connection_termination_details>\S+) '
    r'"(?P<upstream_transport_failure_reason>[^"]*)" (?P<bytes_received>\d+) (?P<bytes_sent>\d+) '
    r'(?P<duration>\d+) (?P<upstream_service_time>\S+) "(?P<x_forwarded_for>[^"]*)" "(?P<user_agent>[^"]*)" '
    r'"(?P<request_id>[^"]*)" "(?P<authority>[^"]*)" "(?P<upstream_host>[^"]*)" (?P<upstream_cluster>\S+) '
    r'(?P<upstream_local_address>\S+) (?P<downstream_local_address>\S+) (?P<downstream_remote_address>\S+) '
    r'(?P<requested_server_name>\S+) (?P<route_name>\S+)$')
# telemetry_logging.go EnvoyJSONLogFormatIstio: the same fields, by these names.
ISTIO_JSON_FIELDS = frozenset(ISTIO_TEXT_LINE.groupindex)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(cluster: Cluster, kubelet: Kubelet,
               tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    """Bookinfo, and the Prometheus server scraping its pods (started once they run)."""
    built = Mesh(cluster, kubelet, MESH_SPEC)
    built.control.apply_telemetry(MESH_DEFAULT)
    built.add_objects(bookinfo_objects())
    server = kubelet.prepare(netns_prometheus.prometheus_pod(tmp_path_factory.mktemp("prometheus"),
                                                             [pod.body for pod in built.workloads]))
    built.add_service("prometheus", netns_prometheus.SYSTEM, [(netns_prometheus.PORT, netns_prometheus.PORT)],
                      netns_prometheus.LABEL)
    try:
        await built.start()
        await kubelet.start(server)
        yield built
    finally:
        await built.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prometheus(mesh: Mesh) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """Prometheus's API through a port-forward to its Service, as `tracemesh dashboard prometheus` gives it."""
    async with mesh.forward("prometheus") as forward, aiohttp.ClientSession() as session:
        await until(lambda: all_up(session, forward.url, len(mesh.workloads)), "every sidecar scraped")
        yield session, forward.url


async def all_up(session: aiohttp.ClientSession, url: str, count: int) -> bool:
    health = await netns_prometheus.targets_up(session, url)
    return len(health) == count and set(health.values()) == {"up"}


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what}"
        await asyncio.sleep(0.25)


async def settled(session: aiohttp.ClientSession, url: str, promql: str, expected: float,
                  timeout_s: float = 30.0) -> float | None:
    """The query's value once it reaches `expected` (or the last one seen after the timeout), and then after
    two more scrapes, so that a count overshooting `expected` is seen too."""
    deadline = time.monotonic() + timeout_s
    while await netns_prometheus.scalar(session, url, promql) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
    await asyncio.sleep(2.5)
    return await netns_prometheus.scalar(session, url, promql)


async def send(mesh: Mesh, count: int) -> None:
    for _ in range(count):
        assert await productpage(mesh) == 200


async def test_prometheus_counts_every_bookinfo_request_at_reviews_with_productpage_as_source(
        mesh: Mesh, prometheus: tuple[aiohttp.ClientSession, str], summary: list[str]) -> None:
    session, url = prometheus
    before = await netns_prometheus.scalar(session, url, REVIEWS_REQUESTS) or 0.0
    await send(mesh, REQUESTS)
    assert await settled(session, url, REVIEWS_REQUESTS, before + REQUESTS) == before + REQUESTS
    sources = await netns_prometheus.query(session, url, (
        'sum by (source_workload, source_workload_namespace, source_canonical_service, source_app) '
        '(istio_requests_total{reporter="destination",destination_canonical_service="reviews"})'))
    assert [sample["metric"] for sample in sources] == [{
        "source_workload": "productpage-v1", "source_workload_namespace": "default",
        "source_canonical_service": "productpage", "source_app": "productpage"}]
    buckets = await netns_prometheus.query(session, url, (
        'istio_request_duration_milliseconds_bucket{reporter="destination",destination_canonical_service="reviews"}'))
    assert buckets and {sample["metric"]["le"] for sample in buckets} >= {"+Inf"}
    summary.append(f"Prometheus ({url}): {REQUESTS} Bookinfo requests -> istio_requests_total at reviews "
                   f"+{REQUESTS:g}, source productpage-v1; {len(buckets)} duration bucket series")


def disable_request_count() -> dict[str, Any]:
    """Istio's docs' override: REQUEST_COUNT off for the namespace."""
    return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
            "metadata": {"name": "no-request-count", "namespace": "default"},
            "spec": {"metrics": [{"providers": [{"name": "prometheus"}],
                                  "overrides": [{"match": {"metric": "REQUEST_COUNT"}, "disabled": True}]}]}}


async def test_a_telemetry_disabling_request_count_for_the_namespace_takes_effect_live(
        mesh: Mesh, prometheus: tuple[aiohttp.ClientSession, str], summary: list[str]) -> None:
    session, url = prometheus
    mesh.control.apply_telemetry(disable_request_count())
    try:
        synced = await mesh.wait_synced()
        await asyncio.sleep(2.5)  # two scrapes of the new config
        counted = await netns_prometheus.scalar(session, url, REVIEWS_REQUESTS)
        timed = await netns_prometheus.scalar(session, url, REVIEWS_DURATIONS) or 0.0
        await send(mesh, REQUESTS)
        # The durations still count every request; the request count no longer moves (or is gone).
        assert await settled(session, url, REVIEWS_DURATIONS, timed + REQUESTS) == timed + REQUESTS
        after = await netns_prometheus.scalar(session, url, REVIEWS_REQUESTS)
        assert after is None or (counted is not None and after == counted), (counted, after)
    finally:
        mesh.control.delete_telemetry("default", "no-request-count")
        await mesh.wait_synced()
    await asyncio.sleep(2.5)
    before = await netns_prometheus.scalar(session, url, REVIEWS_REQUESTS) or 0.0
    await send(mesh, REQUESTS)
    assert await settled(session, url, REVIEWS_REQUESTS, before + REQUESTS) == before + REQUESTS
    summary.append(f"REQUEST_COUNT disabled for namespace default in force after {synced * 1000:.0f} ms: "
                   f"{REQUESTS} requests left istio_requests_total at {after}; deleting the Telemetry resumed it")


# promtool's one lint of Istio's own exposition: the metric's name is Istio's (and Grafana's, Kiali's).
ISTIOS_OWN_LINT = 'istio_request_duration_milliseconds use base unit "seconds" instead of "milliseconds"'
PROMTOOL_LINT_PROBLEMS = 3  # promtool's exit code for lint problems (parse errors exit 1)


async def test_every_sidecars_exposition_passes_promtool(mesh: Mesh) -> None:
    for pod in mesh.workloads:
        status, _, body = await http_get(mesh.cluster.node, pod.net.ip, 15090, "/stats/prometheus")
        assert status == 200
        checked = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, check=False)
        report = f"{checked.stdout.decode()}{checked.stderr.decode()}"
        problems = set(report.splitlines()) - {ISTIOS_OWN_LINT, ""}
        assert checked.returncode in (0, PROMTOOL_LINT_PROBLEMS) and not problems, f"{pod.key}: {report}"
        assert b"istio_requests_total{" in body, pod.key  # each has served requests by now


def sidecar_log(pod: RunningPod) -> Path:
    return pod.processes["istio-proxy"].log


def log_sizes(mesh: Mesh) -> dict[str, int]:
    return {pod.key: sidecar_log(pod).stat().st_size for pod in mesh.workloads}


def new_lines(mesh: Mesh, sizes: dict[str, int]) -> dict[str, list[str]]:
    """Each sidecar's log lines written since `sizes` were taken."""
    lines = {}
    for pod in mesh.workloads:
        with sidecar_log(pod).open("rb") as log:
            log.seek(sizes[pod.key])
            lines[pod.key] = log.read().decode(errors="replace").splitlines()
    return lines


async def with_mesh_config(mesh: Mesh, **fields: Any) -> None:
    mesh.control.set_mesh({**copy.deepcopy(MESH_SPEC), **fields})
    await mesh.wait_synced()


async def logged_requests(mesh: Mesh, parse: Callable[[str], dict[str, str] | None]) -> dict[str, list[dict[str, str]]]:
    """Sends REQUESTS Bookinfo requests; every sidecar's access log entries they wrote, by app."""
    sizes = log_sizes(mesh)
    await send(mesh, REQUESTS)
    await asyncio.sleep(1.0)  # the proxies write after each response
    entries: dict[str, list[dict[str, str]]] = {}
    for key, lines in new_lines(mesh, sizes).items():
        app = key.split("/")[1].split("-")[0]
        entries.setdefault(app, []).extend(entry for line in lines if (entry := parse(line)) is not None)
    return entries


def check_one_entry_per_request_per_sidecar(entries: dict[str, list[dict[str, str]]]) -> None:
    """Each request: productpage's sidecar logs its inbound request and its two outbound calls, details' and
    reviews' sidecars their inbound one, and ratings is called by reviews v2 and v3 only."""
    paths = {app: sorted(entry["path"] for entry in found) for app, found in entries.items()}
    assert paths["productpage"] == sorted(["/productpage", "/details/0", "/reviews/0"] * REQUESTS), paths
    assert paths["details"] == ["/details/0"] * REQUESTS
    reviews_inbound = [path for path in paths["reviews"] if path == "/reviews/0"]
    ratings_calls = [path for path in paths["reviews"] if path.startswith("/ratings/")]
    assert len(reviews_inbound) == REQUESTS and len(ratings_calls) + len(reviews_inbound) == len(paths["reviews"])
    assert len(paths["ratings"]) == len(ratings_calls)
    assert all(entry["response_code"] == "200" for found in entries.values() for entry in found)
    # Bookinfo forwards x-request-id: productpage's inbound request and its calls share it.
    ids = {entry["request_id"] for entry in entries["productpage"]}
    assert len(ids) == REQUESTS, ids


def text_entry(line: str) -> dict[str, str] | None:
    match = ISTIO_TEXT_LINE.match(line)
    return match.groupdict() if match else None


def json_entry(line: str) -> dict[str, str] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return {key: str(value) for key, value in entry.items()} if isinstance(entry, dict) and "start_time" in entry \
        else None


async def test_access_log_file_writes_istios_default_text_format_one_line_per_request_per_sidecar(
        mesh: Mesh, summary: list[str]) -> None:
    await with_mesh_config(mesh, accessLogFile="/dev/stdout")
    try:
        entries = await logged_requests(mesh, text_entry)
    finally:
        await with_mesh_config(mesh)
    check_one_entry_per_request_per_sidecar(entries)
    summary.append(f"accessLogFile /dev/stdout: {sum(map(len, entries.values()))} lines in Istio's default format "
                   f"for {REQUESTS} requests")
    after_off = await logged_requests(mesh, text_entry)
    assert not any(after_off.values()), after_off


async def test_access_log_encoding_json_writes_istios_json_fields(mesh: Mesh) -> None:
    await with_mesh_config(mesh, accessLogFile="/dev/stdout", accessLogEncoding="JSON")
    try:
        entries = await logged_requests(mesh, json_entry)
    finally:
        await with_mesh_config(mesh)
    check_one_entry_per_request_per_sidecar(entries)
    assert all(set(entry) == ISTIO_JSON_FIELDS for found in entries.values() for entry in found)


async def test_a_telemetry_logging_server_side_only_takes_effect_live(mesh: Mesh) -> None:
    """Istio's accesslogs_test `mode-server`: the built-in `envoy` provider for inbound requests only."""
    body = {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
            "metadata": {"name": "logs", "namespace": "default"},
            "spec": {"accessLogging": [{"providers": [{"name": "envoy"}], "match": {"mode": "SERVER"}}]}}
    mesh.control.apply_telemetry(body)
    try:
        await mesh.wait_synced()
        entries = await logged_requests(mesh, text_entry)
    finally:
        mesh.control.delete_telemetry("default", "logs")
        await mesh.wait_synced()
    paths = {app: sorted(entry["path"] for entry in found) for app, found in entries.items()}
    assert paths["productpage"] == ["/productpage"] * REQUESTS  # its calls to details and reviews: not logged
    assert paths["details"] == ["/details/0"] * REQUESTS
    assert [path for path in paths["reviews"] if not path.startswith("/reviews/")] == []
    assert all(entry["upstream_cluster"].startswith("inbound|") for found in entries.values() for entry in found)
