"""The standard metrics' store and exposition, and their labels after Telemetry overrides (metrics.py, recorder.py)."""

from __future__ import annotations

import bisect
import math
from dataclasses import fields
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from telemetry_records import REVIEWS, http_record

from tracemesh_sidecar.config.model import NodeIdentity, ProxyConfig
from tracemesh_sidecar.config.observability import MetricOverride, MetricsConfig, MetricsPolicy
from tracemesh_sidecar.stats import Stats
from tracemesh_sidecar.telemetry.metrics import BUCKETS, STANDARD_LABELS, MetricStore, bucket_index
from tracemesh_sidecar.telemetry.peer import Peer
from tracemesh_sidecar.telemetry.recorder import DirectionTelemetry
from tracemesh_sidecar.telemetry.sink import LogFiles

NODE = NodeIdentity(pod_name="productpage-v1-6b746f74dc-9stvs", namespace="default", pod_ip="10.244.0.5",
                    canonical_service="productpage", canonical_revision="v1",
                    labels={"app": "productpage", "version": "v1", "pod-template-hash": "6b746f74dc"})


def telemetry(tmp_path: Path, client: MetricsPolicy | None = None,
              direction: str = "outbound") -> tuple[DirectionTelemetry, MetricStore]:
    store = MetricStore()
    config = ProxyConfig(node=NODE, metrics=MetricsConfig(client=client or MetricsPolicy()))
    return DirectionTelemetry(config, direction, store, LogFiles(Stats())), store


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def test_a_client_request_is_reported_with_istios_labels_and_buckets(tmp_path: Path) -> None:
    recorder, store = telemetry(tmp_path)
    recorder.record(http_record(peer=REVIEWS, status=503, flags="UF"))
    recorder.record(http_record(peer=REVIEWS, status=503, flags="UF"))
    found = samples(store.render())
    [(labels, count)] = found["istio_requests_total"]
    assert count == 2
    assert list(labels) == list(STANDARD_LABELS)
    assert labels == {
        "reporter": "source", "source_workload": "productpage-v1", "source_workload_namespace": "default",
        "source_principal": "unknown", "source_app": "productpage", "source_version": "v1",
        "source_canonical_service": "productpage", "source_canonical_revision": "v1", "source_cluster": "Kubernetes",
        "destination_workload": "reviews-v2", "destination_workload_namespace": "default",
        "destination_principal": "unknown", "destination_app": "reviews", "destination_version": "v2",
        "destination_service": "productpage.default.svc.cluster.local", "destination_service_name": "productpage",
        "destination_service_namespace": "default", "destination_canonical_service": "reviews",
        "destination_canonical_revision": "v2", "destination_cluster": "Kubernetes", "request_protocol": "http",
        "response_code": "503", "grpc_response_status": "", "response_flags": "UF",
        "connection_security_policy": "unknown",
    }
    buckets = [(labels["le"], value) for labels, value in found["istio_request_duration_milliseconds_bucket"]]
    # Envoy's bucket bounds as its Prometheus exposition writes them.
    assert [le for le, _ in buckets] == ["0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500",
                                         "5000", "10000", "30000", "60000", "300000", "600000", "1.8e+06", "3.6e+06",
                                         "+Inf"]
    assert dict(buckets)["25"] == 0 and dict(buckets)["50"] == 2  # 37.9 ms each
    assert found["istio_request_duration_milliseconds_sum"][0][1] == 2 * 37.9
    assert found["istio_response_bytes_sum"][0][1] == 2 * 5183
    assert found["istio_request_bytes_count"][0][1] == 2


def test_the_server_reports_the_caller_as_source_and_itself_as_destination(tmp_path: Path) -> None:
    recorder, store = telemetry(tmp_path, direction="inbound")
    recorder.record(http_record(peer=REVIEWS, request_headers={"content-type": "application/grpc"},
                                response_headers={"grpc-status": "0"}))
    [(labels, _)] = samples(store.render())["istio_requests_total"]
    assert labels["reporter"] == "destination"
    assert (labels["source_workload"], labels["source_canonical_service"]) == ("reviews-v2", "reviews")
    assert (labels["destination_workload"], labels["destination_app"]) == ("productpage-v1", "productpage")
    assert labels["connection_security_policy"] == "none"
    assert (labels["request_protocol"], labels["grpc_response_status"]) == ("grpc", "0")


def test_a_passthrough_request_names_the_host_and_passthrough_cluster(tmp_path: Path) -> None:
    recorder, store = telemetry(tmp_path)
    recorder.record(http_record(service_host=None, authority="example.com"))
    [(labels, _)] = samples(store.render())["istio_requests_total"]
    assert (labels["destination_service"], labels["destination_service_name"]) == ("example.com", "PassthroughCluster")
    assert labels["destination_workload"] == "unknown"


def test_overrides_disable_remove_and_set_tags_in_order(tmp_path: Path) -> None:
    policy = MetricsPolicy(overrides=(
        MetricOverride(metric="ALL_METRICS", tag_remove=("request_protocol", "source_principal")),
        MetricOverride(metric="REQUEST_COUNT", tag_set=(("destination_port", "string(destination.port)"),
                                                        ("request_protocol", "request.method"))),
        MetricOverride(metric="REQUEST_SIZE", disabled=True),
        MetricOverride(metric="RESPONSE_SIZE", disabled=True),
        MetricOverride(metric="RESPONSE_SIZE", disabled=False),
    ))
    recorder, store = telemetry(tmp_path, client=policy)
    recorder.record(http_record())
    found = samples(store.render())
    [(labels, _)] = found["istio_requests_total"]
    assert labels["destination_port"] == "9080" and labels["request_protocol"] == "GET"
    assert "source_principal" not in labels
    [(duration_labels, _)] = found["istio_request_duration_milliseconds_count"]
    assert "request_protocol" not in duration_labels and "destination_port" not in duration_labels
    assert "istio_request_bytes_count" not in found
    assert "istio_response_bytes_count" in found


def test_a_tag_with_no_value_is_unknown(tmp_path: Path) -> None:
    policy = MetricsPolicy(overrides=(MetricOverride(metric="REQUEST_COUNT",
                                                     tag_set=(("user", "request.headers['x-user']"),)),))
    recorder, store = telemetry(tmp_path, client=policy)
    recorder.record(http_record())
    assert samples(store.render())["istio_requests_total"][0][0]["user"] == "unknown"


def test_requests_with_the_same_labels_add_to_one_series_whoever_holds_the_peer(tmp_path: Path) -> None:
    """The recorder keeps each label set's series at hand, and each peer's labels by the peer object: an equal peer
    that is another object (its metadata decoded again) and a new response code must still land where they belong."""
    recorder, store = telemetry(tmp_path)
    again = Peer(**{each.name: getattr(REVIEWS, each.name) for each in fields(REVIEWS)})
    assert again == REVIEWS and again is not REVIEWS
    for record in (http_record(peer=REVIEWS), http_record(peer=again), http_record(peer=REVIEWS, status=503),
                   http_record(peer=REVIEWS, bytes_sent=10)):
        recorder.record(record)
    found = samples(store.render())
    counts = {labels["response_code"]: count for labels, count in found["istio_requests_total"]}
    assert counts == {"200": 3, "503": 1}
    assert {labels["destination_workload"] for labels, _ in found["istio_requests_total"]} == {"reviews-v2"}
    sums = {labels["response_code"]: value for labels, value in found["istio_response_bytes_sum"]}
    assert sums == {"200": 2 * 5183 + 10, "503": 5183}


def test_each_request_value_a_standard_label_is_made_of_keeps_its_own_series(tmp_path: Path) -> None:
    """The recorder finds a request's series by the values its labels are made of (peer, service host, authority,
    gRPC or not, status, grpc-status, flags), not by the labels: each of them, changed alone, is another series, and
    a request like an earlier one, built anew, adds to that one's series."""
    recorder, store = telemetry(tmp_path)
    variants = {
        "plain": {},
        "peer": {"peer": REVIEWS},
        "service": {"service_host": "reviews.default.svc.cluster.local"},
        "passthrough": {"service_host": None, "authority": "example.com"},
        "passthrough elsewhere": {"service_host": None, "authority": "example.org"},
        "grpc": {"request_headers": {"content-type": "application/grpc"}},
        "status": {"status": 404},
        "grpc-status": {"response_headers": {"grpc-status": "14"}},
        "flags": {"flags": "UF"},
    }
    for changes in (*variants.values(), *variants.values()):
        recorder.record(http_record(**changes))
    found = samples(store.render())
    counts = [count for _, count in found["istio_requests_total"]]
    assert counts == [2.0] * len(variants)
    labels = [labels for labels, _ in found["istio_requests_total"]]
    assert [(each["destination_service"], each["destination_service_name"]) for each in labels[3:5]] == [
        ("example.com", "PassthroughCluster"), ("example.org", "PassthroughCluster")]
    assert [each["request_protocol"] for each in labels] == ["http"] * 5 + ["grpc"] + ["http"] * 3
    assert [each["grpc_response_status"] for each in labels][7] == "14"


def test_a_services_requests_under_any_host_header_share_one_cached_entry(tmp_path: Path) -> None:
    """The authority names a passthrough's series, not a Service's: a client varying its Host header for one Service
    neither splits its series nor fills the recorder's cache."""
    recorder, store = telemetry(tmp_path)
    for index in range(50):
        recorder.record(http_record(authority=f"productpage-{index}.example:9080"))
    assert [count for _, count in samples(store.render())["istio_requests_total"]] == [50.0]
    assert len(recorder._series) == 1


def test_a_tag_computed_from_each_request_keeps_a_series_per_value(tmp_path: Path) -> None:
    policy = MetricsPolicy(overrides=(MetricOverride(metric="REQUEST_COUNT",
                                                     tag_set=(("user", "request.headers['x-user']"),)),))
    recorder, store = telemetry(tmp_path, client=policy)
    for user in ("ana", "bo", "ana"):
        recorder.record(http_record(request_headers={"x-user": user}))
    found = samples(store.render())
    assert {labels["user"]: count for labels, count in found["istio_requests_total"]} == {"ana": 2, "bo": 1}
    assert found["istio_request_duration_milliseconds_count"][0][1] == 3


def test_a_direction_with_metrics_off_records_nothing_and_a_push_retires_its_series(tmp_path: Path) -> None:
    recorder, store = telemetry(tmp_path)
    recorder.record(http_record())
    assert store.value("istio_requests_total", {"reporter": "source"}) == 1
    off, _ = telemetry(tmp_path, client=MetricsPolicy(enabled=False))
    assert not off.active
    later = DirectionTelemetry(ProxyConfig(node=NODE, metrics=MetricsConfig(client=MetricsPolicy(
        overrides=(MetricOverride(metric="REQUEST_COUNT", disabled=True),)))), "outbound", store, LogFiles(Stats()))
    later.retire_disabled()
    assert store.value("istio_requests_total", {"reporter": "source"}) == 0
    assert store.value("istio_request_duration_milliseconds", {"reporter": "source"}) == 1


def test_tcp_connections_count_opened_closed_and_bytes(tmp_path: Path) -> None:
    recorder, store = telemetry(tmp_path, direction="inbound")
    record = http_record(tcp=True, method="", path="", authority="", request_headers={}, response_headers={},
                         status=0, bytes_received=0, bytes_sent=0)
    recorder.tcp_opened(record)
    record.bytes_received, record.bytes_sent = 120, 4500
    recorder.tcp_closed(record)
    found = samples(store.render())
    assert found["istio_tcp_connections_opened_total"][0][1] == 1
    assert found["istio_tcp_connections_closed_total"][0][1] == 1
    assert found["istio_tcp_received_bytes_total"][0][1] == 120
    assert found["istio_tcp_sent_bytes_total"][0][1] == 4500
    labels = found["istio_tcp_sent_bytes_total"][0][0]
    assert labels["request_protocol"] == "tcp" and "response_code" not in labels


def test_the_openmetrics_exposition_parses_with_prometheus_clients_openmetrics_parser(tmp_path: Path) -> None:
    recorder, store = telemetry(tmp_path)
    recorder.record(http_record(request_headers={"x": 'a "quoted"\nvalue'}))
    families = {family.name: family for family in parse_openmetrics(store.render(openmetrics=True) + "# EOF\n")}
    assert families["istio_requests"].type == "counter"
    assert families["istio_request_duration_milliseconds"].type == "histogram"


def test_bucket_index_is_bisect_left_over_the_buckets() -> None:
    """Each bound, each side of it, zero, negative, +Inf and NaN (bisect puts NaN in the first bucket), ints too."""
    values: list[float] = [0, -1.0, math.inf, -math.inf, math.nan, 10**9]
    for bound in BUCKETS:
        values += [bound, bound - 0.001, bound + 0.001, math.nextafter(bound, 0), math.nextafter(bound, math.inf)]
    for value in values:
        assert bucket_index(value) == bisect.bisect_left(BUCKETS, value), value
    assert bucket_index(1) == 1 and bucket_index(1.0) == 1  # le="1" holds a 1 ms request
    assert bucket_index(3_600_001) == len(BUCKETS)  # +Inf
