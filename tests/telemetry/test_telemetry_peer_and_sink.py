"""The metadata exchange headers (peer.py) and the non-blocking access-log files (sink.py)."""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path

import pytest
from google.protobuf import struct_pb2

from tracemesh_sidecar.config.model import NodeIdentity
from tracemesh_sidecar.stats import Stats
from tracemesh_sidecar.telemetry.peer import (
    PEER_METADATA,
    PEER_METADATA_ID,
    UNKNOWN_PEER,
    answer_lines,
    carries_peer_headers,
    decode_peer,
    exchange_headers,
    workload_name,
)
from tracemesh_sidecar.telemetry.sink import LogFile

NODE = NodeIdentity(pod_name="reviews-v2-7d79f5b6c8-abcde", namespace="bookinfo", pod_ip="10.244.0.7",
                    canonical_service="reviews", canonical_revision="v2", cluster_id="east",
                    labels={"app": "reviews", "version": "v2", "pod-template-hash": "7d79f5b6c8"})


def test_the_exchange_headers_round_trip_to_the_peer_labels() -> None:
    headers = dict(exchange_headers(NODE, "sidecar"))
    assert headers[PEER_METADATA_ID] == \
        "sidecar~10.244.0.7~reviews-v2-7d79f5b6c8-abcde.bookinfo~bookinfo.svc.cluster.local"
    peer = decode_peer(headers[PEER_METADATA])
    assert (peer.workload, peer.namespace, peer.app, peer.version) == ("reviews-v2", "bookinfo", "reviews", "v2")
    assert (peer.canonical_service, peer.canonical_revision, peer.cluster) == ("reviews", "v2", "east")
    assert dict(peer.labels)["service.istio.io/canonical-name"] == "reviews"


def test_the_metadata_is_a_serialized_protobuf_struct_as_istios() -> None:
    metadata = struct_pb2.Struct()
    metadata.ParseFromString(base64.b64decode(dict(exchange_headers(NODE, "sidecar"))[PEER_METADATA]))
    assert metadata["WORKLOAD_NAME"] == "reviews-v2" and metadata["NAMESPACE"] == "bookinfo"
    assert metadata["LABELS"]["app"] == "reviews"


def test_absent_or_garbled_metadata_is_an_unknown_peer() -> None:
    assert decode_peer(None) is UNKNOWN_PEER
    assert decode_peer("not base64!") is UNKNOWN_PEER
    assert decode_peer(base64.b64encode(b"\xff\xff\xff").decode()) is UNKNOWN_PEER
    assert UNKNOWN_PEER.workload == "unknown"


def test_workload_name_drops_the_replica_set_suffix_only_when_the_pod_has_one() -> None:
    assert workload_name(NODE) == "reviews-v2"
    assert workload_name(NodeIdentity(pod_name="ratings-0", namespace="x", pod_ip="1.2.3.4",
                                      canonical_service="ratings")) == "ratings-0"


def test_lines_are_written_in_order(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    file = LogFile(str(path), Stats())
    for index in range(100):
        file.write(f"line {index}\n")
    assert file.flush(5.0)
    file.close()
    assert path.read_text().splitlines() == [f"line {index}" for index in range(100)]


def test_a_blocked_reader_never_blocks_a_request_and_drops_are_counted(tmp_path: Path) -> None:
    fifo = tmp_path / "stdout"
    os.mkfifo(fifo)  # nobody reads it: opening it for writing blocks the writer thread
    stats = Stats()
    file = LogFile(str(fifo), stats, buffer_lines=10)
    done = threading.Event()

    def write_many() -> None:
        for index in range(50):
            file.write(f"line {index}\n")
        done.set()

    threading.Thread(target=write_many, daemon=True).start()
    assert done.wait(5.0)  # 50 writes returned although nothing could be written
    assert stats.get("access_log.dropped") >= 40
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # unblocks the writer thread's open
    try:
        assert file.flush(5.0)
        file.close()
        text = b""
        while chunk := _read(reader):
            text += chunk
        assert text.decode().splitlines()[0] == "line 0"
    finally:
        os.close(reader)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""


@pytest.mark.parametrize(("fields", "carries", "answered"), [
    ({}, False, b""),
    ({"x-envoy-peer-metadata-idx": "1", "host": "r"}, False, b""),
    ({"x-envoy-peer-metadata-id": "sidecar~1"}, True, b"id-line\r\n"),
    ({"x-envoy-peer-metadata": "Cg=="}, True, b"metadata-line\r\n"),
    ({"x-envoy-peer-metadata": "Cg==", "x-envoy-peer-metadata-id": "sidecar~1"}, True,
     b"metadata-line\r\nid-line\r\n"),
])
def test_a_request_is_answered_the_metadata_exchange_headers_it_carried(fields: dict[str, str], carries: bool,
                                                                          answered: bytes) -> None:
    answer = (("x-envoy-peer-metadata", b"metadata-line\r\n"), ("x-envoy-peer-metadata-id", b"id-line\r\n"))
    assert carries_peer_headers(fields) is carries
    assert answer_lines(answer, fields) == answered
