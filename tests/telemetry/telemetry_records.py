"""Records for the telemetry unit tests: one finished request as the proxy describes it."""

from __future__ import annotations

from dataclasses import replace

from tracemesh_sidecar.telemetry.peer import UNKNOWN_PEER, Peer
from tracemesh_sidecar.telemetry.record import Record

# 2026-12-01T15:40:20.123456Z
START_US = 1796139620123456


def http_record(**changes: object) -> Record:
    record = Record(
        tcp=False, method="GET", path="/productpage?u=normal", authority="productpage:9080", protocol="HTTP/1.1",
        request_headers={"user-agent": "curl/8.5.0", "x-request-id": "f2a4-11", "x-forwarded-for": "10.0.0.9"},
        response_headers={"content-type": "text/html"}, status=200, flags="-", bytes_received=0, bytes_sent=5183,
        start_us=START_US, end_us=START_US + 37_900, upstream_host=("10.244.0.12", 9080),
        upstream_local=("10.244.0.5", 41234), cluster="outbound|9080||productpage.default.svc.cluster.local",
        service_host="productpage.default.svc.cluster.local", downstream_local=("10.96.0.20", 9080),
        downstream_remote=("10.244.0.5", 51000), route_name="default", peer=UNKNOWN_PEER,
    )
    return replace(record, **changes)  # type: ignore[arg-type]


REVIEWS = Peer(workload="reviews-v2", namespace="default", app="reviews", version="v2",
               canonical_service="reviews", canonical_revision="v2", cluster="Kubernetes", name="reviews-v2-7d-x",
               labels=(("app", "reviews"), ("version", "v2")))
