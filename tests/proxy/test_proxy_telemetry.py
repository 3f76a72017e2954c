"""Istio's standard metrics, the metadata exchange and access logs through real sidecars on real sockets.

The exposition is read the way Prometheus reads it (prometheus_client's text and OpenMetrics parsers) from the
sidecars' own endpoints; the app behind the server sidecar (the `origin` fixture) records what it was sent.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from pathlib import Path

import aiohttp
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from proxy_harness import Origin, RawOrigin, Sidecar, client_config, request, server_config, sidecar

from tracemesh_sidecar.config.model import NodeIdentity, ProxyConfig
from tracemesh_sidecar.config.observability import (
    AccessLogConfig,
    AccessLogSink,
    MetricOverride,
    MetricsConfig,
    MetricsPolicy,
)

PRODUCTPAGE = NodeIdentity(pod_name="productpage-v1-6b746f74dc-9stvs", namespace="default", pod_ip="127.0.0.1",
                           canonical_service="productpage", canonical_revision="v1",
                           labels={"app": "productpage", "version": "v1", "pod-template-hash": "6b746f74dc"})
REVIEWS = NodeIdentity(pod_name="reviews-v2-7d79f5b6c8-abcde", namespace="default", pod_ip="127.0.0.1",
                       canonical_service="reviews", canonical_revision="v2",
                       labels={"app": "reviews", "version": "v2", "pod-template-hash": "7d79f5b6c8"})
GET_ECHO = b"GET /echo HTTP/1.1\r\nHost: reviews:9080\r\nUser-Agent: telemetry-test\r\n\r\n"
# Istio's default format (pilot/pkg/model/telemetry_logging.go EnvoyTextLogFormat) as a pattern.
ISTIO_LINE = re.compile(
    r'\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "(?P<method>\S+) (?P<path>\S+) HTTP/1\.1" (?P<code>\d+) '
    r'(?P<flags>\S+) (?P<details>\S+) - "-" \d+ (?P<sent>\d+) \d+ - "-" "(?P<ua>[^"]*)" "(?P<rid>[^"]*)" '
    r'"reviews:9080" "127\.0\.0\.1:\d+" (?P<cluster>\S+) 127\.0\.0\.1:\d+ 127\.0\.0\.1:\d+ 127\.0\.0\.1:\d+ - '
    r'(?P<route>\S+)\n')


def reviews_side(app_port: int, **changes: object) -> ProxyConfig:
    return server_config(app_port, node=REVIEWS, **changes)


def productpage_side(server: Sidecar, **changes: object) -> ProxyConfig:
    return client_config([f"127.0.0.1:{server.inbound_port}"], node=PRODUCTPAGE, **changes)


async def scrape(side: Sidecar, role: str = "admin", accept: str | None = None) -> tuple[str, str]:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{side.admin_port(role)}/stats/prometheus",
            headers={"Accept": accept} if accept else {}) as response:
        return response.headers["Content-Type"], await response.text()


def series(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(sample.labels), sample.value) for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name]


async def test_the_callee_reports_the_callers_identity_which_the_app_never_sees(origin: Origin) -> None:
    async with sidecar(reviews_side(origin.port)) as server, sidecar(productpage_side(server)) as client:
        for _ in range(3):
            response = await request(client.outbound_port, GET_ECHO)
            assert response.status == 200
            assert response.header("x-envoy-peer-metadata") is None
            assert response.header("x-envoy-peer-metadata-id") is None
        seen = {name for request_seen in origin.requests for name, _ in request_seen["headers"]}  # type: ignore[attr-defined]
        assert not {"x-envoy-peer-metadata", "x-envoy-peer-metadata-id"} & seen

        content_type, text = await scrape(server, "prometheus")
        assert content_type.startswith("text/plain; version=0.0.4")
        [(labels, count)] = series(text, "istio_requests_total")
        assert count == 3
        assert labels["reporter"] == "destination"
        assert (labels["source_workload"], labels["source_canonical_service"], labels["source_app"],
                labels["source_version"]) == ("productpage-v1", "productpage", "productpage", "v1")
        assert (labels["destination_workload"], labels["destination_canonical_service"],
                labels["destination_canonical_revision"]) == ("reviews-v2", "reviews", "v2")
        assert labels["destination_service"] == "reviews.default.svc.cluster.local"
        assert (labels["response_code"], labels["request_protocol"]) == ("200", "http")
        assert series(text, "istio_request_duration_milliseconds_count")[0][1] == 3

        _, text = await scrape(client)
        [(labels, count)] = series(text, "istio_requests_total")
        assert count == 3
        assert (labels["reporter"], labels["source_workload"]) == ("source", "productpage-v1")
        # The callee's sidecar answered with its own metadata: the caller knows the workload that served it.
        assert (labels["destination_workload"], labels["destination_version"]) == ("reviews-v2", "v2")
        assert labels["destination_service_name"] == "reviews"


async def test_without_a_peer_sidecar_the_source_is_unknown_and_nothing_is_answered(origin: Origin) -> None:
    async with sidecar(reviews_side(origin.port)) as server:
        response = await request(server.inbound_port, GET_ECHO)
        assert response.status == 200 and response.header("x-envoy-peer-metadata") is None
        _, text = await scrape(server, "prometheus")
        [(labels, _)] = series(text, "istio_requests_total")
        assert (labels["source_workload"], labels["source_canonical_service"]) == ("unknown", "unknown")


async def test_the_callee_answers_each_exchange_header_it_was_sent(origin: Origin) -> None:
    """istio/proxy's peer_metadata filter (MXPropagationMethod::inject): a response carries the id, the metadata,
    each only when the request carried it."""
    async with sidecar(reviews_side(origin.port)) as server:
        response = await request(server.inbound_port, GET_ECHO.replace(
            b"\r\n\r\n", b"\r\nx-envoy-peer-metadata-id: sidecar~10.0.0.1~caller.default~default.svc.cluster.local"
                         b"\r\n\r\n"))
        assert response.header("x-envoy-peer-metadata-id") == \
            "sidecar~127.0.0.1~reviews-v2-7d79f5b6c8-abcde.default~default.svc.cluster.local"
        assert response.header("x-envoy-peer-metadata") is None
        assert "x-envoy-peer-metadata-id" not in {name for name, _ in origin.requests[0]["headers"]}  # type: ignore[attr-defined]


async def test_openmetrics_when_the_scraper_asks_for_it(origin: Origin) -> None:
    async with sidecar(reviews_side(origin.port)) as server:
        await request(server.inbound_port, GET_ECHO)
        content_type, text = await scrape(server, "prometheus", accept="application/openmetrics-text; version=1.0.0")
        assert content_type.startswith("application/openmetrics-text")
        families = {family.name: family for family in parse_openmetrics(text)}
        assert families["istio_requests"].samples[0].value == 1
        assert families["istio_request_duration_milliseconds"].type == "histogram"


async def test_access_logs_one_line_per_request_per_sidecar(origin: Origin, tmp_path: Path) -> None:
    server_log, client_log = tmp_path / "reviews.log", tmp_path / "productpage.log"
    server_logs = AccessLogConfig(server=(AccessLogSink(path=str(server_log)),))
    client_logs = AccessLogConfig(client=(AccessLogSink(path=str(client_log), encoding="JSON"),))
    async with sidecar(reviews_side(origin.port, access_logs=server_logs)) as server, \
            sidecar(productpage_side(server, access_logs=client_logs)) as client:
        for _ in range(3):
            await request(client.outbound_port, GET_ECHO)
        await request(client.outbound_port, b"GET /status/503 HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        server.runtime.log_files.flush()
        client.runtime.log_files.flush()
    server_lines = [ISTIO_LINE.fullmatch(line + "\n") for line in server_log.read_text().splitlines()]
    assert len(server_lines) == 4 and all(server_lines)
    first = server_lines[0]
    assert first is not None
    assert (first["method"], first["path"], first["code"], first["flags"], first["details"], first["ua"],
            first["cluster"], first["route"]) == ("GET", "/echo", "200", "-", "via_upstream", "telemetry-test",
                                                  "inbound|9080||", "default")
    client_documents = [json.loads(line) for line in client_log.read_text().splitlines()]
    assert len(client_documents) == 4
    assert [document["response_code"] for document in client_documents] == [200, 200, 200, 503]
    assert client_documents[0]["upstream_cluster"] == "outbound|9080||reviews.default.svc.cluster.local"
    # The same request in both sidecars' logs: the caller's fresh x-request-id reached the callee.
    assert [document["request_id"] for document in client_documents] == [
        match["rid"] for match in server_lines if match is not None]


async def test_an_outbound_access_log_reads_the_response_as_forwarded(origin: Origin, tmp_path: Path) -> None:
    """The answering sidecar's metadata exchange headers are taken out of the response before the caller sees it,
    and before its sidecar's access log reads it."""
    log = tmp_path / "productpage.log"
    logs = AccessLogConfig(client=(AccessLogSink(
        path=str(log), format="%RESP(X-ENVOY-PEER-METADATA-ID)% %RESP(CONTENT-TYPE)%\n"),))
    async with sidecar(reviews_side(origin.port)) as server, \
            sidecar(productpage_side(server, access_logs=logs)) as client:
        response = await request(client.outbound_port, GET_ECHO)
        client.runtime.log_files.flush()
    assert log.read_text() == f"- {response.header('content-type')}\n"


async def test_a_config_push_changes_metrics_and_access_logs_live(origin: Origin, tmp_path: Path) -> None:
    log = tmp_path / "reviews.log"
    async with sidecar(reviews_side(origin.port)) as server:
        await request(server.inbound_port, GET_ECHO)
        _, text = await scrape(server, "prometheus")
        assert series(text, "istio_requests_total")
        pushed = replace(server.runtime.config, version="2", metrics=MetricsConfig(server=MetricsPolicy(overrides=(
            MetricOverride(metric="REQUEST_COUNT", disabled=True),
            MetricOverride(metric="REQUEST_DURATION", tag_set=(("method", "request.method"),)),
        ))), access_logs=AccessLogConfig(server=(AccessLogSink(path=str(log), filter="response.code >= 400"),)))
        assert pushed is not None
        await server.runtime.apply(pushed)
        await request(server.inbound_port, GET_ECHO)
        await request(server.inbound_port, b"GET /status/404 HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        server.runtime.log_files.flush()
        _, text = await scrape(server, "prometheus")
        assert not series(text, "istio_requests_total")  # disabled: gone from the exposition
        methods = {labels.get("method") for labels, _ in series(text, "istio_request_duration_milliseconds_count")}
        assert methods == {None, "GET"}  # the series from before the push, and the new tag after it
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and '"GET /status/404 HTTP/1.1" 404' in lines[0]


async def test_opaque_tcp_connections_are_counted_with_their_bytes(tmp_path: Path) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(65536)
        writer.write(data * 2)
        await writer.drain()

    log = tmp_path / "tcp.log"
    async with RawOrigin(echo) as app, sidecar(reviews_side(
            app.port, access_logs=AccessLogConfig(server=(AccessLogSink(path=str(log)),)))) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.inbound_port)
        writer.write(b"\x16\x03\x01 not http")
        assert await asyncio.wait_for(reader.read(), 5) == b"\x16\x03\x01 not http" * 2
        writer.close()
        async with asyncio.timeout(5):
            while True:
                _, text = await scrape(server, "prometheus")
                if series(text, "istio_tcp_connections_closed_total"):
                    break
                await asyncio.sleep(0.02)
        server.runtime.log_files.flush()
    [(labels, opened)] = series(text, "istio_tcp_connections_opened_total")
    assert opened == 1 and labels["request_protocol"] == "tcp" and labels["reporter"] == "destination"
    assert series(text, "istio_tcp_received_bytes_total")[0][1] == 12
    assert series(text, "istio_tcp_sent_bytes_total")[0][1] == 24
    assert log.read_text().split('" ', 1)[0].endswith('"- - -')


async def _answer_with_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.readuntil(b"\r\n\r\n"):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Answer: 42\r\nGrpc-Status: 7\r\n\r\nok")
        await writer.drain()


async def test_the_response_headers_telemetry_reads_reach_it(tmp_path: Path) -> None:
    # With the standard metrics alone, an exchange keeps only grpc-status of the response's headers (the label that
    # reads it); an access log or an expression tag reads any of them. Each, through a real sidecar.
    log = tmp_path / "reviews.log"
    logs = AccessLogConfig(server=(AccessLogSink(path=str(log), format="%RESP(X-ANSWER)% %RESP(GRPC-STATUS)%\n"),))
    tagged = MetricsConfig(server=MetricsPolicy(overrides=(
        MetricOverride(metric="REQUEST_COUNT", tag_set=(("answer", "response.headers['x-answer']"),)),)))
    async with RawOrigin(_answer_with_headers) as app:
        async with sidecar(reviews_side(app.port)) as server:
            await request(server.inbound_port, GET_ECHO)
            _, text = await scrape(server, "prometheus")
        [(labels, _)] = series(text, "istio_requests_total")
        assert labels["grpc_response_status"] == "7"
        async with sidecar(reviews_side(app.port, access_logs=logs)) as server:
            await request(server.inbound_port, GET_ECHO)
            server.runtime.log_files.flush()
        assert log.read_text() == "42 7\n"
        async with sidecar(reviews_side(app.port, metrics=tagged)) as server:
            await request(server.inbound_port, GET_ECHO)
            _, text = await scrape(server, "prometheus")
        [(labels, _)] = series(text, "istio_requests_total")
        assert (labels["answer"], labels["grpc_response_status"]) == ("42", "7")
