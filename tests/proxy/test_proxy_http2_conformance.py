"""HTTP/2 conformance through the sidecar, in the manner of h2spec (which no Debian, PyPI or npm package ships):
the preface and SETTINGS exchange, stream states, END_STREAM on both sides, trailers, flow control past a
window, resets and GOAWAY in both directions, and streams multiplexed onto one origin connection.

Clients speak h2c with prior knowledge (gRPC's way) to the inbound listener of an in-process sidecar whose
app is an h2c-only origin, so every request must also leave over HTTP/2. Section numbers are RFC 9113's;
where the RFC leaves a choice, Envoy's behaviour (source/common/router/router.cc for upstream resets,
source/common/http/conn_manager_impl.cc for draining) is what is asserted.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from h2_harness import (
    PREFACE,
    H2Client,
    H2Origin,
    RawH2,
    eventually,
    frame_bytes,
    header_value,
)
from hyperframe.frame import GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame
from proxy_harness import Sidecar, pair, server_config, sidecar

MIB = 1024 * 1024
GRPC_HEADERS = [("content-type", "application/grpc"), ("te", "trailers")]
GRPC_MESSAGE = b"\x00\x00\x00\x00\x07\x0a\x05world"  # one length-prefixed message: HelloRequest{name: "world"}


@pytest.fixture
async def h2_origin() -> AsyncIterator[H2Origin]:
    async with H2Origin() as origin:
        yield origin
    assert origin.protocol_errors == [], "the proxy sent the origin invalid HTTP/2"


@pytest.fixture
async def server_side(h2_origin: H2Origin) -> AsyncIterator[Sidecar]:
    async with sidecar(server_config(h2_origin.port)) as side:
        yield side


# ------------------------------------------------------------------ connection preface and SETTINGS (3.4, 6.5)


async def test_the_server_preface_is_settings_with_envoys_limits(server_side: Sidecar) -> None:
    async with await RawH2.connect(server_side.inbound_port) as raw:
        first = await raw.next_frame()
    assert isinstance(first, SettingsFrame) and "ACK" not in first.flags, f"first frame: {first}"
    settings = first.settings
    assert settings.get(SettingCodes.MAX_CONCURRENT_STREAMS) == 100
    assert settings.get(SettingCodes.INITIAL_WINDOW_SIZE, 65535) == 65535
    assert settings.get(SettingCodes.MAX_FRAME_SIZE, 16384) == 16384
    assert settings.get(SettingCodes.MAX_HEADER_LIST_SIZE) == 60 * 1024  # Envoy's max_request_headers_kb


async def test_the_clients_settings_are_acknowledged(server_side: Sidecar) -> None:
    async with await RawH2.connect(server_side.inbound_port, {SettingCodes.INITIAL_WINDOW_SIZE: 100000}) as raw:
        ack = await raw.until(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags)
    assert isinstance(ack, SettingsFrame) and not ack.settings


async def test_ping_is_answered_with_the_same_opaque_data(server_side: Sidecar) -> None:
    async with await RawH2.connect(server_side.inbound_port) as raw:
        raw.send(PingFrame(0, opaque_data=b"tracemsh"))
        pong = await raw.until(lambda f: isinstance(f, PingFrame))
    assert isinstance(pong, PingFrame) and "ACK" in pong.flags and pong.opaque_data == b"tracemsh"


async def test_a_bad_preface_opens_no_stream(server_side: Sidecar, h2_origin: H2Origin) -> None:
    """Not the preface, so not HTTP/2: passed through as opaque TCP, as Istio's http_inspector leaves what it
    cannot classify to the TCP proxy chain (here the h2c origin itself refuses it), or refused by the proxy
    with GOAWAY PROTOCOL_ERROR (3.4). Either way the connection closes and no stream reaches the origin."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server_side.inbound_port)
    raw = RawH2(reader, writer)
    raw.send_bytes(PREFACE.replace(b"SM", b"XX") + SettingsFrame(0).serialize())
    closed = await raw.wait_closed()
    raw.abort()
    assert closed
    goaways = [frame.error_code for frame in raw.received if isinstance(frame, GoAwayFrame)]
    assert goaways in ([], [ErrorCodes.PROTOCOL_ERROR])
    assert h2_origin.streams == []
    passed_through = [error for error in h2_origin.protocol_errors if "preamble" in error]
    assert passed_through or goaways
    h2_origin.protocol_errors = [error for error in h2_origin.protocol_errors if error not in passed_through]
    async with await H2Client.connect(server_side.inbound_port) as client:
        assert (await client.request("/after-bad-preface")).status == 200


# ------------------------------------------------------------------ streams (5.1, 8.1)


async def test_a_get_ends_the_stream_on_both_sides(server_side: Sidecar, h2_origin: H2Origin) -> None:
    async with await H2Client.connect(server_side.inbound_port) as client:
        response = await client.request("/both-ends")
    assert (response.status, bytes(response.body), response.ended) == (200, b"ok:/both-ends", True)
    [seen] = h2_origin.with_path("/both-ends")
    assert seen.ended and seen.body == b""
    assert header_value(seen.headers, ":method") == "GET"
    assert header_value(seen.headers, ":authority") == "reviews:9080"
    # Relayed by the proxy's HTTP/2 codec (not tunnelled as bytes): it added the trace and request ids.
    assert header_value(seen.headers, "x-request-id")
    assert len(header_value(seen.headers, "x-b3-traceid") or "") == 32


async def test_a_request_ended_by_an_empty_data_frame(server_side: Sidecar, h2_origin: H2Origin) -> None:
    async with await H2Client.connect(server_side.inbound_port) as client:
        stream_id = client.start("/ended-later", "POST", end_stream=False)
        await client.send_body(stream_id, b"abc", end_stream=False)
        assert await eventually(lambda: [bytes(s.body) for s in h2_origin.with_path("/ended-later")] == [b"abc"])
        [seen] = h2_origin.with_path("/ended-later")
        assert not seen.ended  # half-closed only once the client says so
        client.conn.end_stream(stream_id)  # an empty DATA frame with END_STREAM
        client.flush()
        response = await client.response(stream_id)
    assert response.status == 200 and response.ended
    assert seen.ended and seen.body == b"abc"


async def test_data_on_a_half_closed_stream_is_a_stream_closed_error(server_side: Sidecar) -> None:
    """5.1: DATA after the client's END_STREAM is a stream error STREAM_CLOSED; the connection stays."""
    async with await RawH2.connect(server_side.inbound_port) as raw:
        raw.send(raw.request_headers(1, "/hang/half-closed"))
        raw.send_bytes(frame_bytes(0x0, 0x0, 1, b"late"))
        error = await raw.until(lambda f: isinstance(f, RstStreamFrame | HeadersFrame) and f.stream_id == 1)
        assert isinstance(error, RstStreamFrame) and error.error_code == ErrorCodes.STREAM_CLOSED, f"got {error}"
        raw.send(raw.request_headers(3, "/after-half-closed"))
        assert (await raw.response(3)).status == 200


# ------------------------------------------------------------------ flow control (5.2, 6.9)


async def test_a_request_body_larger_than_the_windows_arrives_intact(server_side: Sidecar,
                                                                     h2_origin: H2Origin) -> None:
    body = bytes(range(256)) * (4 * MIB // 256)  # 64 windows of 64 KiB: only WINDOW_UPDATEs let it through
    async with await H2Client.connect(server_side.inbound_port) as client:
        response = await client.request("/echo", "POST", body=body, timeout_s=30)
    assert response.status == 200
    assert bytes(response.body) == b"%d %s" % (len(body), hashlib.sha256(body).hexdigest().encode())
    assert len(h2_origin.with_path("/echo")[0].body) == len(body)


async def test_a_response_body_larger_than_the_windows_arrives_intact(server_side: Sidecar) -> None:
    async with await H2Client.connect(server_side.inbound_port) as client:
        response = await client.request(f"/size/{4 * MIB}", timeout_s=30)
    assert response.status == 200 and response.ended
    assert bytes(response.body) == b"z" * (4 * MIB)


# ------------------------------------------------------------------ trailers (8.1)


async def test_grpc_trailers_are_relayed_both_ways(server_side: Sidecar, h2_origin: H2Origin) -> None:
    path = "/helloworld.Greeter/SayHello"
    async with await H2Client.connect(server_side.inbound_port) as client:
        response = await client.request(path, "POST", headers=GRPC_HEADERS, body=GRPC_MESSAGE,
                                        trailers=[("x-request-trailer", "sent")])
    assert response.status == 200 and response.ended
    assert bytes(response.body) == GRPC_MESSAGE
    assert header_value(response.trailers, "grpc-status") == "0"
    [seen] = h2_origin.with_path(path)
    assert header_value(seen.headers, "te") == "trailers"
    assert ("x-request-trailer", "sent") in seen.trailers


async def test_grpc_through_the_sidecar_pair_stays_http2_with_trailers(h2_origin: H2Origin) -> None:
    path = "/helloworld.Greeter/SayHello"
    async with pair(h2_origin.port) as (client_side, _), \
            await H2Client.connect(client_side.outbound_port) as client:
        response = await client.request(path, "POST", headers=GRPC_HEADERS, body=GRPC_MESSAGE)
    assert response.status == 200 and response.ended
    assert bytes(response.body) == GRPC_MESSAGE
    assert header_value(response.trailers, "grpc-status") == "0"
    assert len(h2_origin.with_path(path)) == 1


async def test_the_clients_grpc_timeout_is_the_calls_deadline(server_side: Sidecar, h2_origin: H2Origin) -> None:
    """A gRPC client's `grpc-timeout` bounds the call (Istio's routes set max_grpc_timeout: route/route.go
    setTimeout), however long the client itself waits: at the deadline the proxy answers as Envoy's router does
    on its timeout, 504 UT as a trailers-only gRPC reply (grpc-status 14, the reason in grpc-message)."""
    headers = [*GRPC_HEADERS, ("grpc-timeout", "300m")]
    async with await H2Client.connect(server_side.inbound_port) as client:  # it would wait 10 s for an answer
        response = await client.request("/hang/helloworld.Greeter/SayHello", "POST", headers=headers,
                                        body=GRPC_MESSAGE, timeout_s=10)
    assert response.status == 200 and response.ended and not response.body
    assert header_value(response.headers, "grpc-status") == "14"
    assert header_value(response.headers, "grpc-message") == "upstream request timeout"
    assert server_side.stats.get("inbound.response_flags.UT") == 1
    [span] = [span for _, span in server_side.exporters.spans]
    assert span.tags["grpc.status_code"] == "14" and span.tags["response_flags"] == "UT"
    assert span.tags["grpc.timeout"] == "300m" and span.tags["error"] == "true"


# ------------------------------------------------------------------ RST_STREAM (6.4) and GOAWAY (6.8)


async def test_an_origin_reset_before_the_response_is_a_503_flagged_ur(server_side: Sidecar) -> None:
    """Envoy's Router::Filter::onUpstreamReset: no response started yet, so a local reply (503,
    `upstream_reset_before_response_started`) with response flag UR (UpstreamRemoteReset)."""
    async with await H2Client.connect(server_side.inbound_port) as client:
        response = await client.request("/reset-before-headers")
        assert response.status == 503 and response.ended
        assert (await client.request("/after-origin-reset")).status == 200  # the client's connection stays
    assert server_side.stats.get("inbound.response_flags.UR") == 1


async def test_an_origin_reset_after_the_headers_resets_the_clients_stream(server_side: Sidecar) -> None:
    """Envoy resets the downstream stream once the response has started: the client sees headers, then
    RST_STREAM, never END_STREAM."""
    async with await H2Client.connect(server_side.inbound_port) as client:
        response = await client.request("/reset-after-headers")
        assert response.status == 200
        assert response.reset_code is not None and not response.ended, f"{response}"
        assert (await client.request("/after-mid-response-reset")).status == 200


async def test_a_client_reset_is_relayed_to_the_origin(server_side: Sidecar, h2_origin: H2Origin) -> None:
    async with await H2Client.connect(server_side.inbound_port) as client:
        stream_id = client.start("/hang/client-reset")
        assert await eventually(lambda: bool(h2_origin.with_path("/hang/client-reset")))
        client.reset(stream_id, ErrorCodes.CANCEL)
        [seen] = h2_origin.with_path("/hang/client-reset")
        assert await eventually(lambda: seen.reset_code is not None), "the origin's stream was left open"
        assert (await client.request("/after-client-reset")).status == 200


async def test_a_new_origin_connection_follows_the_origins_goaway(server_side: Sidecar,
                                                                  h2_origin: H2Origin) -> None:
    async with await H2Client.connect(server_side.inbound_port) as client:
        assert (await client.request("/goaway")).status == 200
        assert await eventually(lambda: h2_origin.connections == 1)
        response = await client.request("/after-origin-goaway")
        assert response.status == 200, f"{response}"
        assert client.goaway is None  # the origin's GOAWAY is the proxy's business, not the client's
    assert h2_origin.connections == 2
    assert h2_origin.with_path("/after-origin-goaway")[0].connection == 2


async def test_draining_the_sidecar_sends_goaway_no_error(h2_origin: H2Origin) -> None:
    """Envoy's drain sequence (ConnectionManagerImpl::startDrainSequence): GOAWAY NO_ERROR, then close."""
    async with sidecar(server_config(h2_origin.port)) as side:
        client = await H2Client.connect(side.inbound_port)
        assert (await client.request("/before-drain")).status == 200
    try:
        assert await client.wait_closed()
        assert client.goaway is not None and client.goaway.error_code == ErrorCodes.NO_ERROR
    finally:
        client.abort()


# ------------------------------------------------------------------ multiplexing (5.1.2)


async def test_many_concurrent_streams_share_one_origin_connection(server_side: Sidecar,
                                                                   h2_origin: H2Origin) -> None:
    count = 50
    async with await H2Client.connect(server_side.inbound_port) as client:
        ids = [client.start(f"/together/{count}/{index}") for index in range(count)]
        responses = [await client.response(stream_id, timeout_s=15) for stream_id in ids]
    assert [response.status for response in responses] == [200] * count
    assert [bytes(response.body) for response in responses] == [b"ok:/together/%d/%d" % (count, index)
                                                                 for index in range(count)]
    assert h2_origin.connections == 1
    assert h2_origin.most_concurrent == count  # all open at once on that one connection
