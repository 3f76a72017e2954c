"""Bad and oversized input is refused with a client error, and what is stored stays stored (issue 10, part 4).

Every refusal test first stores a trace and checks afterwards that all of it is still served.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from collector_samples import NOW_US, bookinfo_trace, span, trace_id
from grpc import aio

from tracemesh_collector import RunningCollector, SpanStore
from tracemesh_collector.request_body import MAX_BODY_BYTES
from tracemesh_sidecar.spans import zipkin_json
from tracemesh_sidecar.spans.otlp_writer import varint

MINUTE = 60_000_000
DEEP = 100_000
MB = 1024 * 1024


@pytest.fixture
async def stored(collector: RunningCollector) -> AsyncIterator[RunningCollector]:
    collector.store.add(bookinfo_trace(trace_id(1), NOW_US - MINUTE))
    yield collector
    # the refusal left the stored trace whole
    assert collector.store.span_count == 7
    assert len(collector.store.get_trace(trace_id(1))) == 7


# ---- the store's bound counts bytes ---------------------------------------------------------


def test_the_bound_counts_bytes_so_megabyte_tags_evict_old_traces() -> None:
    store = SpanStore(max_spans=1000, max_bytes=3 * MB)
    store.add(bookinfo_trace(trace_id(1), NOW_US - 3 * MINUTE))
    store.add(bookinfo_trace(trace_id(2), NOW_US - 2 * MINUTE))
    heavy = span(trace_id(3), "00000000000000e1", None, "blob.default", "upload", "SERVER", NOW_US - MINUTE, 10,
                 tags={"request.body": "x" * (2 * MB)})
    store.add([heavy])
    assert store.byte_count <= 3 * MB
    assert store.get_trace(trace_id(3)) == [heavy] and store.get_trace(trace_id(2))
    store.add([span(trace_id(4), "00000000000000e2", None, "blob.default", "upload", "SERVER", NOW_US, 10,
                    tags={"request.body": "y" * (2 * MB)})])
    # 4 MB of tags cannot fit in 3 MB: the earliest traces go until it does
    assert [bool(store.get_trace(trace_id(n))) for n in (1, 2, 3, 4)] == [False, False, False, True]
    assert store.span_count == 1 and 2 * MB < store.byte_count <= 3 * MB



def test_a_byte_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        SpanStore(max_bytes=0)


# ---- oversized bodies ------------------------------------------------------------------------


async def raw_request(url: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """Send a request whose headers may promise more than `body`, and read the answer without sending the rest."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    head = "".join(f"{key}: {value}\r\n" for key, value in headers.items())
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode() + body)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest


@pytest.mark.parametrize(("port", "path", "content_type"), [
    ("zipkin_url", "/api/v2/spans", "application/json"),
    ("zipkin_url", "/api/v1/spans", "application/x-thrift"),
    ("otlp_url", "/v1/traces", "application/x-protobuf"),
])
async def test_an_oversized_content_length_is_refused_before_the_body_is_read(
        stored: RunningCollector, port: str, path: str, content_type: str) -> None:
    # only 2 of the 100 MB promised are sent: an answer proves the server did not wait for the rest
    status, answer = await raw_request(getattr(stored, port), path, {
        "Content-Type": content_type, "Content-Length": str(100 * MB)}, b"[]")
    assert status == 413
    assert str(MAX_BODY_BYTES).encode() in answer


async def test_an_expect_100_continue_client_is_refused_before_sending(stored: RunningCollector) -> None:
    status, _ = await raw_request(stored.zipkin_url, "/api/v2/spans", {
        "Content-Type": "application/json", "Content-Length": str(100 * MB), "Expect": "100-continue"}, b"")
    assert status == 413


async def chunks(total: int, piece: bytes) -> AsyncIterator[bytes]:
    for _ in range(total // len(piece)):
        yield piece


async def post(http: aiohttp.ClientSession, url: str, data: Any, **headers: str) -> tuple[int, str]:
    async with http.post(url, data=data, headers=headers) as response:
        return response.status, await response.text()


async def test_a_chunked_body_is_read_only_up_to_the_cap(http: aiohttp.ClientSession,
                                                         stored: RunningCollector) -> None:
    status, message = await post(http, f"{stored.zipkin_url}/api/v2/spans", chunks(MAX_BODY_BYTES + MB, b" " * MB),
                                 **{"Content-Type": "application/json"})
    assert (status, "limit (after decompression)" in message) == (413, True)


async def test_a_gzip_bomb_is_inflated_only_up_to_the_cap(http: aiohttp.ClientSession,
                                                          stored: RunningCollector) -> None:
    bomb = gzip.compress(b"[" + b" " * (200 * MB) + b"]")
    assert len(bomb) < MAX_BODY_BYTES // 20
    for url in (f"{stored.zipkin_url}/api/v2/spans", f"{stored.otlp_url}/v1/traces"):
        status, _ = await post(http, url, bomb, **{"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert status == 413


# ---- deeply nested bodies ----------------------------------------------------------------------


def nested_otlp_json() -> bytes:
    """An OTLP JSON export whose one attribute value is a map nested 100 000 deep."""
    inner = '{"kvlistValue":{"values":[{"key":"k","value":' * DEEP + '{"stringValue":"x"}' + "}]}}" * DEEP
    return ('{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5af7183fb1d4cf5f5af7183fb1d4cf5f",'
            '"spanId":"352bff9a74ca9ad2","attributes":[{"key":"deep","value":' + inner + "}]}]}]}]}").encode()


@pytest.mark.parametrize(("port", "path", "body"), [
    ("otlp_url", "/v1/traces", nested_otlp_json()),
    ("otlp_url", "/v1/traces", b"[" * DEEP + b"]" * DEEP),
    ("otlp_url", "/v1/traces", b'{"resourceSpans":' + b"[" * DEEP + b"]" * DEEP + b"}"),
    ("zipkin_url", "/api/v2/spans", b"[" * DEEP + b"]" * DEEP),
    ("zipkin_url", "/api/v1/spans", b'[{"traceId":' + b"[" * DEEP + b"]" * DEEP + b"}]"),
])
async def test_json_nested_100000_deep_gets_a_400(http: aiohttp.ClientSession, stored: RunningCollector, port: str,
                                                   path: str, body: bytes) -> None:
    status, message = await post(http, getattr(stored, port) + path, body, **{"Content-Type": "application/json"})
    assert status == 400, message
    assert "none stored" in message or "no span stored" in message


async def test_protobuf_nested_100000_deep_gets_invalid_argument(stored: RunningCollector) -> None:
    """AnyValue{kvlist_value{values[KeyValue{value: AnyValue{...}}]}} 100 000 levels deep, over OTLP/gRPC."""
    message = b"\x0a\x01x"  # AnyValue.string_value = "x"
    for _ in range(DEEP // 100):  # 1000 levels: far beyond protobuf's recursion limit of 100
        key_value = b"\x0a\x01k" + b"\x12" + varint(len(message)) + message
        kvlist = b"\x0a" + varint(len(key_value)) + key_value
        message = b"\x32" + varint(len(kvlist)) + kvlist
    attribute = b"\x0a\x04deep\x12" + varint(len(message)) + message
    otlp_span = (b"\x0a\x10" + bytes.fromhex("5af7183fb1d4cf5f5af7183fb1d4cf5f") + b"\x12\x08"
                 + bytes.fromhex("352bff9a74ca9ad2") + b"\x4a" + varint(len(attribute)) + attribute)
    scope_spans = b"\x12" + varint(len(otlp_span)) + otlp_span
    resource_spans = b"\x12" + varint(len(scope_spans)) + scope_spans
    request = b"\x0a" + varint(len(resource_spans)) + resource_spans
    async with aio.insecure_channel(stored.otlp_grpc_target) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(aio.AioRpcError) as raised:
            await export(request, timeout=10)
    assert raised.value.code().name == "INVALID_ARGUMENT"


async def test_the_collector_keeps_taking_spans_after_refusals(http: aiohttp.ClientSession,
                                                               collector: RunningCollector) -> None:
    url = f"{collector.zipkin_url}/api/v2/spans"
    assert (await post(http, url, b"[" * DEEP, **{"Content-Type": "application/json"}))[0] == 400
    assert (await post(http, url, chunks(MAX_BODY_BYTES + MB, b" " * MB), **{"Content-Type": "text/plain"}))[0] == 413
    trace = bookinfo_trace(trace_id(2), NOW_US)
    assert await post(http, url, zipkin_json.encode_spans(trace), **{"Content-Type": "application/json"}) == (202, "")
    assert collector.store.span_count == 7 and len(collector.store.get_trace(trace_id(2))) == 7
