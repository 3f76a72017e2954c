"""Hostile HTTP/2 (h2c, prior knowledge) against the proxy process: rapid reset, HPACK bombs, CONTINUATION
floods, window abuse, control-frame floods, malformed frames. Each is answered as Envoy answers it, without
a crash or unbounded memory, and the proxy keeps serving other connections.

Envoy's references: source/common/http/conn_manager_impl.cc (maybeDrainDueToPrematureResets, CVE-2023-44487),
source/common/http/http2/codec_impl.cc (SETTINGS, flood and header limits); error codes as RFC 9113 names them.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from h2_harness import (
    H2Client,
    H2Origin,
    RawH2,
    eventually,
    frame_bytes,
    settled,
)
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from robust_harness import ProxyProcess, ThreadedOrigin, proxy_process

MIB = 1024 * 1024
WINDOW = 65535  # the proxy's INITIAL_WINDOW_SIZE
PREMATURE_RESETS = "inbound.downstream_rq_too_many_premature_resets"
# What the h2 library raises for an oversized or flooding header block: ENHANCE_YOUR_CALM (DenialOfServiceError),
# PROTOCOL_ERROR (too many CONTINUATION frames), COMPRESSION_ERROR (HPACK decoding failed).
HEADER_ABUSE_CODES = (ErrorCodes.ENHANCE_YOUR_CALM, ErrorCodes.PROTOCOL_ERROR, ErrorCodes.COMPRESSION_ERROR)


@pytest.fixture(scope="module")
def h2_origin() -> Iterator[H2Origin]:
    with ThreadedOrigin(H2Origin()) as origin:
        yield origin


@pytest.fixture(scope="module")
def h2_proxy(h2_origin: H2Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """`tracemesh proxy` whose inbound listener fronts the h2c origin (requests over HTTP/2 go up over HTTP/2)."""
    with proxy_process(h2_origin.port, tmp_path_factory.mktemp("h2-proxy")) as process:
        yield process


def _is_server_settings(frame: Frame) -> bool:
    return isinstance(frame, SettingsFrame) and "ACK" not in frame.flags


async def _ready(proxy: ProxyProcess, receive_buffer: int | None = None) -> RawH2:
    """A raw connection past the preface, the proxy's SETTINGS received and ACKed."""
    raw = await RawH2.connect(proxy.inbound_port, receive_buffer=receive_buffer)
    assert await raw.until(_is_server_settings) is not None, "no SETTINGS from the proxy"
    return raw


async def _served(proxy: ProxyProcess, path: str = "/still-serving") -> bool:
    """Whether a fresh, well-behaved HTTP/2 connection gets a 200."""
    assert proxy.alive(), "the proxy process died"
    async with await H2Client.connect(proxy.inbound_port) as client:
        return (await client.request(path, timeout_s=5)).status == 200


def _stat(proxy: ProxyProcess, name: str) -> float:
    return proxy.stats().get(name, 0)


# ------------------------------------------------------------------ concurrency and rapid reset


async def test_streams_beyond_100_concurrent_are_refused_and_the_connection_stays(
        h2_proxy: ProxyProcess, h2_origin: H2Origin) -> None:
    async with await _ready(h2_proxy) as raw:
        ids = list(range(1, 2 * 110, 2))
        raw.send(*(raw.request_headers(stream_id, f"/hang/concurrent-{stream_id}") for stream_id in ids))
        refused: dict[int, int] = {}
        deadline = time.monotonic() + 10
        while len(refused) < 10 and time.monotonic() < deadline:
            frame = await raw.until(lambda f: isinstance(f, RstStreamFrame), deadline - time.monotonic())
            if not isinstance(frame, RstStreamFrame):
                break
            refused[frame.stream_id] = frame.error_code
        assert refused == dict.fromkeys(ids[100:], ErrorCodes.REFUSED_STREAM)
        assert not raw.closed
        assert await eventually(lambda: len(h2_origin.with_path("/hang/concurrent-")) >= 100)
        forwarded = {int(stream.path.rsplit("-", 1)[1]) for stream in h2_origin.with_path("/hang/concurrent-")}
        assert forwarded == set(ids[:100])
        # One of the 100 ends (the client cancels it): a new stream fits again on the same connection.
        raw.send(RstStreamFrame(ids[0], error_code=ErrorCodes.CANCEL), raw.request_headers(221, "/after-refusal"))
        response = await raw.response(221)
        assert response.status == 200, f"after the refusals: {response}"


async def _rapid_resets(raw: RawH2, first_id: int, count: int, tag: str) -> int:
    """HEADERS then at once RST_STREAM CANCEL on `count` new streams (CVE-2023-44487); the next stream id."""
    stream_id = first_id
    for start in range(0, count, 50):
        frames: list[Frame] = []
        for _ in range(min(50, count - start)):
            frames += [raw.request_headers(stream_id, f"/hang/{tag}-{stream_id}"),
                       RstStreamFrame(stream_id, error_code=ErrorCodes.CANCEL)]
            stream_id += 2
        raw.send(*frames)
        if not await raw.drain() or raw.closed:
            break
    return stream_id


async def _good_requests(raw: RawH2, first_id: int, count: int) -> int:
    """`count` requests answered in full (50 at a time, under the concurrency limit); the next stream id."""
    stream_id = first_id
    for _ in range(count // 50):
        batch = list(range(stream_id, stream_id + 100, 2))
        raw.send(*(raw.request_headers(sid, f"/good-{sid}") for sid in batch))
        for sid, response in (await raw.responses(batch)).items():
            assert response.status == 200 and response.ended, f"good request {sid}: {response}"
        stream_id += 100
    return stream_id


async def test_rapid_reset_aborts_the_connection_as_envoy_does(h2_proxy: ProxyProcess) -> None:
    """ConnectionManagerImpl::maybeDrainDueToPrematureResets: under 500 closed streams, the connection goes
    once premature resets * 2 >= 500, i.e. at the 250th stream reset within a second of its start."""
    before = _stat(h2_proxy, PREMATURE_RESETS)
    async with await _ready(h2_proxy) as raw:
        await _rapid_resets(raw, 1, 600, "rapid")
        assert await raw.wait_closed(10), "the connection survived 600 rapid resets"
    assert await eventually(lambda: _stat(h2_proxy, PREMATURE_RESETS) == before + 1)
    assert await _served(h2_proxy)


async def test_fewer_premature_resets_than_envoys_threshold_keep_the_connection(h2_proxy: ProxyProcess) -> None:
    before = _stat(h2_proxy, PREMATURE_RESETS)
    async with await _ready(h2_proxy) as raw:
        next_id = await _rapid_resets(raw, 1, 200, "few-resets")  # 200 * 2 < 500
        raw.send(raw.request_headers(next_id, "/after-few-resets"))
        response = await raw.response(next_id)
        assert response.status == 200, f"after 200 resets: {response}"
        assert not raw.closed
    assert _stat(h2_proxy, PREMATURE_RESETS) == before


async def test_streams_reset_after_their_first_second_are_not_premature(h2_proxy: ProxyProcess) -> None:
    """Envoy's isPrematureRstStream: only a stream reset within premature_reset_min_stream_lifetime_seconds (1 s)
    of its start counts. 100 streams reset after 1.5 s, then 200 rapid resets: 200 * 2 < 500, kept (were the
    100 counted too, 300 * 2 >= 500 would abort)."""
    before = _stat(h2_proxy, PREMATURE_RESETS)
    async with await _ready(h2_proxy) as raw:
        ids = list(range(1, 201, 2))
        raw.send(*(raw.request_headers(stream_id, f"/hang/aged-{stream_id}") for stream_id in ids))
        await asyncio.sleep(1.5)
        raw.send(*(RstStreamFrame(stream_id, error_code=ErrorCodes.CANCEL) for stream_id in ids))
        next_id = await _rapid_resets(raw, 201, 200, "after-aged")
        raw.send(raw.request_headers(next_id, "/after-aged-resets"))
        response = await raw.response(next_id)
        assert response.status == 200, f"100 aged + 200 premature resets should be kept: {response}"
    assert _stat(h2_proxy, PREMATURE_RESETS) == before


async def test_completed_streams_dilute_premature_resets_past_500_closed_streams(h2_proxy: ProxyProcess) -> None:
    """Envoy's second rule: once 500 streams closed, the connection goes when premature * 2 >= closed.
    After 400 completed streams, 300 resets leave 600 < 700 (kept); 150 more make 900 >= 851 (aborted)."""
    before = _stat(h2_proxy, PREMATURE_RESETS)
    async with await _ready(h2_proxy) as raw:
        next_id = await _good_requests(raw, 1, 400)
        next_id = await _rapid_resets(raw, next_id, 300, "diluted")
        raw.send(raw.request_headers(next_id, "/after-diluted-resets"))
        response = await raw.response(next_id)
        assert response.status == 200, f"400 completed + 300 premature resets should be kept: {response}"
        assert _stat(h2_proxy, PREMATURE_RESETS) == before
        await _rapid_resets(raw, next_id + 2, 150, "tipping")
        assert await raw.wait_closed(10), "400 completed + 450 premature resets should abort the connection"
    assert await eventually(lambda: _stat(h2_proxy, PREMATURE_RESETS) == before + 1)


# ------------------------------------------------------------------ header blocks


def _literal(name_index: int, value: bytes) -> bytes:
    """An HPACK literal header field without indexing, its name from the static table (RFC 7541 6.2.2)."""
    assert name_index < 15 and len(value) < 127
    return bytes([name_index, len(value)]) + value


async def test_an_hpack_bomb_gets_goaway_and_the_connection_closes(h2_proxy: ProxyProcess,
                                                                   h2_origin: H2Origin) -> None:
    async with await _ready(h2_proxy) as raw:
        seed = raw.block([(":method", "GET"), (":scheme", "http"), (":authority", "reviews:9080"),
                          (":path", "/bomb-seed"), ("x-bomb", "b" * 3000)])
        raw.send(HeadersFrame(1, seed, flags=["END_HEADERS", "END_STREAM"]))
        assert (await raw.response(1)).status == 200  # 3 KB of header is fine, and now dynamic table entry 62
        rss_before = h2_proxy.rss_bytes()
        # 30 one-byte references to entry 62: 90 KB of decoded headers (over 60 KiB) from 50 bytes.
        bomb = b"\x82\x86" + _literal(1, b"reviews:9080") + _literal(4, b"/bomb") + bytes([0x80 | 62]) * 30
        raw.send(HeadersFrame(3, bomb, flags=["END_HEADERS", "END_STREAM"]))
        goaway = await raw.goaway()
        assert goaway is not None, "no GOAWAY for 90 KB of decoded headers"
        assert goaway.error_code in HEADER_ABUSE_CODES
        assert await raw.wait_closed()
    assert h2_proxy.rss_bytes() - rss_before < 8 * MIB
    assert not [stream for stream in h2_origin.streams if stream.path == "/bomb"]
    assert await _served(h2_proxy)


@pytest.mark.parametrize("payload_size", [0, 16384], ids=["empty", "full"])
async def test_a_continuation_flood_gets_goaway_with_memory_bounded(h2_proxy: ProxyProcess, h2_origin: H2Origin,
                                                                    payload_size: int) -> None:
    """HEADERS without END_HEADERS, then CONTINUATION frames that never end the block (VU#421644)."""
    async with await _ready(h2_proxy) as raw:
        rss_before = h2_proxy.rss_bytes()
        opening = raw.request_headers(1, "/continuation-flood")
        opening.flags.discard("END_HEADERS")
        raw.send(opening)
        piece = ContinuationFrame(1, b"\x40\x01x\x01v" * (payload_size // 5)).serialize()
        # Empty frames: all 5000 in one write the proxy reads whole, so its GOAWAY is not lost to a reset.
        frames_per_write = 5000 if payload_size == 0 else 16
        for _ in range(5000 // frames_per_write):
            raw.send_bytes(piece * frames_per_write)
            if not await raw.drain(2) or raw.closed:
                break
        goaway = await raw.goaway()
        closed = await raw.wait_closed()
        grown = h2_proxy.rss_bytes() - rss_before
    if payload_size == 0:
        assert goaway is not None and goaway.error_code in HEADER_ABUSE_CODES, f"GOAWAY: {goaway}"
    assert closed, "the connection stayed open through a CONTINUATION flood"
    assert grown < 16 * MIB, f"the proxy grew by {grown >> 20} MiB"
    assert not h2_origin.with_path("/continuation-flood")
    assert await _served(h2_proxy)


async def test_more_than_100_headers_is_431_on_that_stream(h2_proxy: ProxyProcess, h2_origin: H2Origin) -> None:
    async with await H2Client.connect(h2_proxy.inbound_port) as client:
        response = await client.request("/many-headers", headers=[(f"x-many-{index}", "v") for index in range(150)])
        assert response.status == 431
        assert (await client.request("/after-many-headers")).status == 200  # the connection stays
    assert not h2_origin.with_path("/many-headers")


async def test_a_header_block_within_envoys_limits_is_forwarded(h2_proxy: ProxyProcess, h2_origin: H2Origin) -> None:
    headers = [(f"x-fine-{index}", "v" * 600) for index in range(90)]  # about 57 KB decoded, 94 fields
    async with await H2Client.connect(h2_proxy.inbound_port) as client:
        response = await client.request("/fine-headers", headers=headers)
    assert response.status == 200
    [seen] = h2_origin.with_path("/fine-headers")
    assert ("x-fine-89", "v" * 600) in seen.headers


# ------------------------------------------------------------------ flow control


async def test_a_client_that_never_opens_its_window_back_pressures_the_origin(h2_proxy: ProxyProcess,
                                                                              h2_origin: H2Origin) -> None:
    size, streams = 64 * MIB, 10
    rss_before = h2_proxy.rss_bytes()
    async with await H2Client.connect(h2_proxy.inbound_port, settings={SettingCodes.INITIAL_WINDOW_SIZE: 0},
                                      auto_ack=False) as client:
        ids = [client.start(f"/size/{size}/window-{index}") for index in range(streams)]
        assert await eventually(lambda: len(h2_origin.with_path(f"/size/{size}/window-")) == streams)
        seen = h2_origin.with_path(f"/size/{size}/window-")
        held = await settled(lambda: sum(stream.sent for stream in seen))
        grown = h2_proxy.rss_bytes() - rss_before
        # Relay windows: per stream the proxy takes at most one window from the origin while the client takes 0.
        assert held <= streams * 2 * WINDOW, f"the origin got {held} bytes out to a client that reads none"
        assert grown < 16 * MIB, f"the proxy grew by {grown >> 20} MiB"
        # The client opens one stream's window: that stream's data flows again, through to the origin.
        first = next(stream for stream in seen if stream.path.endswith("window-0"))
        sent_before = first.sent
        client.conn.increment_flow_control_window(4 * MIB)
        client.conn.increment_flow_control_window(4 * MIB, stream_id=ids[0])
        client.flush()
        assert await eventually(lambda: first.sent > sent_before + MIB), \
            f"the origin stayed at {first.sent} bytes after the client opened 4 MiB of window"
        assert await eventually(lambda: len(client.responses[ids[0]].body) > MIB)
    assert await _served(h2_proxy)


async def test_a_connection_window_past_2_31_minus_1_is_a_flow_control_error(h2_proxy: ProxyProcess) -> None:
    async with await _ready(h2_proxy) as raw:
        raw.send(WindowUpdateFrame(0, window_increment=2**31 - 1))  # 65535 + 2^31-1 (RFC 9113 6.9.1)
        goaway = await raw.goaway()
        assert goaway is not None and goaway.error_code == ErrorCodes.FLOW_CONTROL_ERROR, f"GOAWAY: {goaway}"
        assert await raw.wait_closed()
    assert await _served(h2_proxy)


async def test_a_stream_window_past_2_31_minus_1_resets_that_stream_only(h2_proxy: ProxyProcess) -> None:
    async with await _ready(h2_proxy) as raw:
        raw.send(raw.request_headers(1, "/hang/stream-window"), WindowUpdateFrame(1, window_increment=2**31 - 1))
        reset = await raw.until(lambda f: isinstance(f, RstStreamFrame) and f.stream_id == 1)
        assert isinstance(reset, RstStreamFrame) and reset.error_code == ErrorCodes.FLOW_CONTROL_ERROR
        raw.send(raw.request_headers(3, "/after-stream-window"))
        assert (await raw.response(3)).status == 200


@pytest.mark.parametrize("flood", [PingFrame(0, opaque_data=b"flooding"), SettingsFrame(0)], ids=["PING", "SETTINGS"])
async def test_a_control_frame_flood_from_a_client_that_never_reads_stays_bounded(h2_proxy: ProxyProcess,
                                                                                  flood: Frame) -> None:
    """Every PING and SETTINGS needs an ACK; a client that reads none must make the proxy stop reading
    (or, as Envoy's outbound control frame limit does, close), not queue ACKs without end."""
    burst = flood.serialize() * 4096
    async with await _ready(h2_proxy, receive_buffer=4096) as raw:
        rss_before = h2_proxy.rss_bytes()
        sent, stalled = 0, False
        deadline = time.monotonic() + 20
        while not raw.closed and sent < 256 * MIB and time.monotonic() < deadline:
            raw.send_bytes(burst)
            if not await raw.drain(2):
                stalled = True
                break
            sent += len(burst)
        assert stalled or raw.closed, f"the proxy read {sent >> 20} MiB of frames whose ACKs nobody read"
        # Stopped, not merely slow: once done with what it had read (a loaded machine can stall the sender for
        # a while without the proxy having stopped), a proxy still reading would go on taking frames. A stopped
        # one may take some more, but only what its kernel lets it write: Linux may grow the socket's send
        # buffer later (up to tcp_wmem's maximum), and each ACK written there lets the proxy read a frame.
        assert raw.closed or await h2_proxy.quiescent(), "the proxy never stopped working on the flood"
        more = await _taken_within(raw, burst, 8)
        assert raw.closed or more < SEND_BUFFER_MAX + MIB, \
            f"the proxy took {more >> 20} MiB more after {sent >> 20} MiB of frames"
        grown = h2_proxy.rss_bytes() - rss_before
    assert grown < 16 * MIB, f"the proxy grew by {grown >> 20} MiB"
    assert await _served(h2_proxy)


# The most a socket's kernel send buffer grows to (tcp_wmem's maximum; Linux's default 4 MiB).
SEND_BUFFER_MAX = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])


async def _taken_within(raw: RawH2, burst: bytes, seconds: float) -> int:
    """Bytes of further bursts the proxy's side took within `seconds` (after what was already waiting)."""
    taken, deadline = 0, time.monotonic() + seconds
    while not raw.closed and time.monotonic() < deadline:
        if await raw.drain(max(0.1, deadline - time.monotonic())) and not raw.closed:
            raw.send_bytes(burst)
            taken += len(burst)
    return taken


# ------------------------------------------------------------------ malformed frames


def _first_headers(stream_id: int, path: str = "/malformed", end_stream: bool = True) -> bytes:
    """HEADERS encoded as the first header block of a connection."""
    block = Encoder().encode([(":method", "GET"), (":scheme", "http"), (":authority", "reviews:9080"),
                              (":path", path)])
    return HeadersFrame(stream_id, block, flags=["END_HEADERS", "END_STREAM"] if end_stream else ["END_HEADERS"]
                        ).serialize()


# What follows the preface and SETTINGS, and the connection error RFC 9113 names for it.
MALFORMED = {
    "DATA on stream 0 (6.1)": (frame_bytes(0x0, 0x1, 0, b"x"), ErrorCodes.PROTOCOL_ERROR),
    "HEADERS on an even stream (5.1.1)": (_first_headers(2), ErrorCodes.PROTOCOL_ERROR),
    "a stream id lower than the last (5.1.1)": (
        _first_headers(5, "/hang/lower") + HeadersFrame(3, b"\x82\x86\x84" + _literal(1, b"reviews:9080"),
                                                       flags=["END_HEADERS", "END_STREAM"]).serialize(),
        ErrorCodes.PROTOCOL_ERROR),
    "WINDOW_UPDATE of 0 on the connection (6.9)": (frame_bytes(0x8, 0, 0, b"\0\0\0\0"), ErrorCodes.PROTOCOL_ERROR),
    "CONTINUATION without HEADERS (6.10)": (frame_bytes(0x9, 0x4, 1, b""), ErrorCodes.PROTOCOL_ERROR),
    "RST_STREAM on stream 0 (6.4)": (frame_bytes(0x3, 0, 0, b"\0\0\0\x08"), ErrorCodes.PROTOCOL_ERROR),
    "SETTINGS ACK with a payload (6.5)": (frame_bytes(0x4, 0x1, 0, b"\0" * 6), ErrorCodes.PROTOCOL_ERROR),
    "SETTINGS_ENABLE_PUSH of 2 (6.5.2)": (frame_bytes(0x4, 0, 0, struct.pack(">HI", 2, 2)),
                                          ErrorCodes.PROTOCOL_ERROR),
    "SETTINGS_MAX_FRAME_SIZE under 16384 (6.5.2)": (frame_bytes(0x4, 0, 0, struct.pack(">HI", 5, 100)),
                                                    ErrorCodes.PROTOCOL_ERROR),
    "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1 (6.5.2)": (frame_bytes(0x4, 0, 0, struct.pack(">HI", 4, 2**31)),
                                                         ErrorCodes.FLOW_CONTROL_ERROR),
    "PING of 4 bytes (6.7)": (frame_bytes(0x6, 0, 0, b"1234"), ErrorCodes.FRAME_SIZE_ERROR),
    "SETTINGS of 5 bytes (6.5)": (frame_bytes(0x4, 0, 0, b"\0" * 5), ErrorCodes.FRAME_SIZE_ERROR),
    "DATA over SETTINGS_MAX_FRAME_SIZE (4.2)": (
        _first_headers(1, "/hang/too-large", end_stream=False) + frame_bytes(0x0, 0, 1, b"x" * 16385),
        ErrorCodes.FRAME_SIZE_ERROR),
    "a header with an uppercase name (8.2.1)": (
        HeadersFrame(1, Encoder().encode([(":method", "GET"), (":scheme", "http"), (":authority", "reviews"),
                                          (":path", "/malformed-upper"), ("X-Upper", "v")]),
                     flags=["END_HEADERS", "END_STREAM"]).serialize(), ErrorCodes.PROTOCOL_ERROR),
    "a request without :path (8.3.1)": (
        HeadersFrame(1, Encoder().encode([(":method", "GET"), (":scheme", "http"), (":authority", "reviews")]),
                     flags=["END_HEADERS", "END_STREAM"]).serialize(), ErrorCodes.PROTOCOL_ERROR),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_malformed_frame_gets_goaway_and_close_and_others_are_still_served(
        h2_proxy: ProxyProcess, h2_origin: H2Origin, case: str) -> None:
    data, code = MALFORMED[case]
    async with await _ready(h2_proxy) as raw:
        raw.send_bytes(data)
        goaway = await raw.goaway()
        assert goaway is not None, f"{case}: no GOAWAY"
        assert goaway.error_code == code, f"{case}: GOAWAY {ErrorCodes(goaway.error_code)!r}"
        assert await raw.wait_closed(), f"{case}: the connection stayed open after GOAWAY"
    assert not h2_origin.with_path("/malformed")
    assert await _served(h2_proxy)


async def test_an_oversized_frame_header_is_refused_before_its_payload(h2_proxy: ProxyProcess) -> None:
    """A frame header announcing 16 MiB - 1: FRAME_SIZE_ERROR at once (RFC 9113 4.2), as nghttp2 does in Envoy,
    not after buffering the payload (h2's FrameBuffer waits for all of it before checking the length)."""
    async with await _ready(h2_proxy) as raw:
        raw.send_bytes(_first_headers(1, "/hang/oversized", end_stream=False)
                       + struct.pack(">I", (1 << 24) - 1)[1:] + struct.pack(">BBI", 0x0, 0, 1))
        goaway = await raw.goaway()
        assert goaway is not None, "no GOAWAY for a 16 MiB frame header (the proxy waits for its payload)"
        assert goaway.error_code == ErrorCodes.FRAME_SIZE_ERROR


def _fuzz_case(rng: random.Random) -> bytes:
    """What follows the preface: random bytes, or a valid request and SETTINGS with a few bytes changed."""
    if rng.randrange(2) == 0:
        return rng.randbytes(rng.randrange(1, 200))
    data = bytearray(SettingsFrame(0, settings={SettingCodes.INITIAL_WINDOW_SIZE: 1000}).serialize()
                     + _first_headers(1, "/fuzz", end_stream=False) + frame_bytes(0x0, 0x1, 1, b"hello"))
    for _ in range(rng.randrange(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


async def test_garbage_after_the_preface_never_breaks_the_proxy(h2_proxy: ProxyProcess) -> None:
    rng = random.Random(20261201)
    for case in range(60):
        data = _fuzz_case(rng)
        raw = await RawH2.connect(h2_proxy.inbound_port)
        raw.send_bytes(data)
        raw.finish()
        closed = await raw.wait_closed(3)  # every frame the proxy sends must parse (RawH2 raises otherwise)
        raw.abort()
        assert closed, f"case {case}: {data!r} left the connection open after the client's FIN"
        assert await _served(h2_proxy), f"after case {case} ({data!r}) a good request failed"
