"""The proxy's small parts: protocol sniffing, headers, routing, SO_ORIGINAL_DST parsing, file loading, the pool."""

from __future__ import annotations

import asyncio
import copy
import pickle
import socket
import struct
from dataclasses import replace
from pathlib import Path

import pytest
from proxy_harness import client_config, server_config

from tracemesh_sidecar.config.fields import ConfigError
from tracemesh_sidecar.config.loader import load_proxy_config
from tracemesh_sidecar.config.model import InboundPort
from tracemesh_sidecar.proxy import headers
from tracemesh_sidecar.proxy.headers import (
    HOP_BY_HOP,
    ResponseHeaders,
    TakenNames,
    build_head,
    chunked,
    forward_drop,
    has_a_length_of,
    header_fields,
    hop_by_hop_names,
    length_flags,
    local_reply,
    lowered_bytes,
    lowered_name,
    response_headers,
)
from tracemesh_sidecar.proxy.origdst import parse_sockaddr_in
from tracemesh_sidecar.proxy.routing import Destination, InboundRouter, OutboundRouter, split_absolute_target
from tracemesh_sidecar.proxy.sniff import MAX_REQUEST_LINE, classify
from tracemesh_sidecar.proxy.upstream import UpstreamPool
from tracemesh_sidecar.stats import Stats


@pytest.mark.parametrize(("first_bytes", "verdict"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "http1"),
    (b"GET http://reviews:9080/x HTTP/1.0\r\n", "http1"),
    (b"CONNECT reviews:443 HTTP/1.1\r\n", "http1"),
    (b"GET / HTTP/1.1\n", "http1"),
    (b"GET /x HT", "undecided"),
    (b"", "undecided"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "http2"),  # RFC 9113 section 3.4: h2c with prior knowledge
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04", "http2"),
    (b"PRI * HTTP/2.0\r\n", "undecided"),  # the preface's first read may end anywhere
    (b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", "opaque"),
    (b"POST / HTTP/1.1\r\n", "http1"),
    (b"\x16\x03\x01\x02\x00\x01\x00", "opaque"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "opaque"),
    (b"GET / HTTP/1.1 extra\r\n", "opaque"),
    (b"G\xc3\xa9T / HT", "opaque"),
    (b"A" * (MAX_REQUEST_LINE + 1), "opaque"),
    # A request line too long to wait for its end still looks like one: parsed, and refused as too large.
    (b"GET /" + b"a" * MAX_REQUEST_LINE, "http1"),
    (b"POST http://reviews/" + b"a" * MAX_REQUEST_LINE, "http1"),
    (b"OPTIONS *" + b" " * MAX_REQUEST_LINE, "http1"),
    (b"GET " + b"a" * MAX_REQUEST_LINE, "opaque"),
])
def test_classify_tells_http1_and_http2_from_everything_else(first_bytes: bytes, verdict: str) -> None:
    assert classify(first_bytes) == verdict


def _headers(*pairs: tuple[bytes, bytes]) -> list[tuple[str, bytes, bytes]]:
    return [(name.decode().lower(), name, value) for name, value in pairs]


def test_hop_by_hop_names_include_what_connection_names() -> None:
    names = hop_by_hop_names("keep-alive, X-Secret, Upgrade")
    assert {"connection", "keep-alive", "te", "proxy-authorization", "x-secret", "upgrade"} <= names
    assert hop_by_hop_names("close") == hop_by_hop_names(None) == HOP_BY_HOP


def test_forward_drop_adds_removed_and_replaced_names() -> None:
    drop = forward_drop(HOP_BY_HOP, frozenset({"b3"}), ("X-Request-Id",))
    assert drop == HOP_BY_HOP | {"b3", "x-request-id"}
    assert forward_drop(HOP_BY_HOP, frozenset({"b3"}), ("X-Request-Id",)) is drop
    also = forward_drop(HOP_BY_HOP, frozenset({"b3"}), ("X-Request-Id",), frozenset({"host"}))
    assert also == drop | {"host"}
    assert forward_drop(HOP_BY_HOP, frozenset(), (), frozenset({"host"})) == HOP_BY_HOP | {"host"}


def test_build_head_keeps_order_and_case_drops_and_appends() -> None:
    head = build_head(b"GET / HTTP/1.1\r\n", _headers((b"Host", b"a"), (b"X-B3-TraceId", b"old"), (b"TE", b"x")),
                      frozenset({"te", "x-b3-traceid"}), [("x-b3-traceid", "new")], b"\r\n")
    assert head == b"GET / HTTP/1.1\r\nHost: a\r\nx-b3-traceid: new\r\n\r\n"


def test_response_headers_drop_hop_by_hop_and_report_framing() -> None:
    scanned = response_headers([(b"Content-Length", b"5"), (b"Connection", b"keep-alive"), (b"Keep-Alive", b"t=5"),
                                (b"X-App", b"1")])
    assert scanned == ResponseHeaders(b"Content-Length: 5\r\nX-App: 1\r\n", chunked=False, has_length=True)
    named = response_headers([(b"X-Hop", b"1"), (b"Connection", b"X-Hop"), (b"Upgrade", b"websocket")],
                             keep_upgrade=True)
    assert named.lines == b"Upgrade: websocket\r\n"
    both = response_headers([(b"Content-Length", b"5"), (b"Transfer-Encoding", b"Chunked")])
    assert both == ResponseHeaders(b"", chunked=True, has_length=False)


def test_response_headers_take_out_the_names_asked_whatever_their_case_in_either_pass() -> None:
    """The metadata exchange headers (exchange.py): taken out of the forwarded lines and given back apart, in
    one pass, and in the second one a Connection header naming further headers takes."""
    take = TakenNames((b"x-envoy-peer-metadata", b"x-envoy-peer-metadata-id"))
    scanned = response_headers([(b"Content-Length", b"2"), (b"X-Envoy-Peer-Metadata", b"Cg=="), (b"X-App", b"1"),
                                (b"x-envoy-peer-metadata-id", b"sidecar~1")], take=take)
    assert scanned == ResponseHeaders(b"Content-Length: 2\r\nX-App: 1\r\n", chunked=False, has_length=True,
                                      taken=[(b"x-envoy-peer-metadata", b"Cg=="),
                                             (b"x-envoy-peer-metadata-id", b"sidecar~1")])
    named = response_headers([(b"X-Hop", b"1"), (b"X-Envoy-Peer-Metadata", b"Cg=="), (b"Connection", b"X-Hop")],
                             take=take)
    assert (named.lines, named.taken) == (b"", [(b"x-envoy-peer-metadata", b"Cg==")])
    untaken = response_headers([(b"X-Envoy-Peer-Metadata", b"Cg==")])
    assert (untaken.lines, untaken.taken) == (b"X-Envoy-Peer-Metadata: Cg==\r\n", None)


def test_length_flags_tell_a_name_as_long_as_one_of_theirs_from_any_other() -> None:
    flags = length_flags((b"te", b"connection", b"upgrade"))
    lengths = [length for length in range(40) if has_a_length_of(flags, b"x" * length)]
    assert lengths == [2, 7, 10]


def test_header_names_are_lowered_the_same_from_the_cache_and_past_its_bound() -> None:
    """Names are the client's: the cache of lowered names stops growing at its bound, and names past it are
    lowered all the same."""
    names = [b"X-Hostile-%d" % index for index in range(3000)]
    assert [lowered_name(name) for name in names] == [name.decode().lower() for name in names]
    assert [lowered_name(name) for name in names] == [name.decode().lower() for name in names]
    assert all(len(known) <= headers._LOWERED_PER_LENGTH for known in headers._LOWERED)
    assert all(len(entry[0]) == length for length, known in enumerate(headers._LOWERED) for entry in known)
    long_name = b"X-" + b"Long" * 1000  # a hostile name as long as a head allows is lowered, never kept
    assert lowered_name(long_name) == long_name.decode().lower()
    assert long_name not in {entry[0] for known in headers._LOWERED for entry in known}
    # Names of one length told apart by their bytes, the case as received included.
    assert [lowered_name(name) for name in (b"X-Request-Id", b"x-request-id", b"content-type", b"X-REQUEST-ID")] == [
        "x-request-id", "x-request-id", "content-type", "x-request-id"]
    # The bytes as bytes.lower() gives them (ASCII letters only), from the cache and past it alike.
    assert [lowered_bytes(name) for name in (b"Content-Length", b"\xc9T\xc9", long_name)] == [
        b"content-length", b"\xc9t\xc9", long_name.lower()]
    assert lowered_name(b"User-Agent") == "user-agent" and lowered_name(b"\xc9T\xc9") == "\xe9t\xe9"


def test_header_fields_lowercases_and_joins_repeats() -> None:
    fields = header_fields(_headers((b"Accept", b"a"), (b"accept", b"b"), (b"Host", b"h")))
    assert fields == {"accept": "a, b", "host": "h"}


def test_chunked_and_local_reply_framing() -> None:
    assert b"".join(chunked(b"x" * 26)) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    reply = local_reply(503, "no healthy upstream", close=True)
    assert reply.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"content-length: 19\r\n" in reply and b"connection: close\r\n" in reply
    assert reply.endswith(b"\r\n\r\nno healthy upstream")


@pytest.mark.parametrize(("target", "expected"), [
    (b"http://reviews:9080/x?y=1", ("reviews:9080", b"/x?y=1")),
    (b"HTTP://Reviews", ("Reviews", b"/")),
    (b"http://reviews?q", ("reviews", b"/?q")),
    (b"http://user:pw@reviews:9080/", ("reviews:9080", b"/")),
    (b"/origin/form", None),
    (b"https://secure/", None),
])
def test_split_absolute_target(target: bytes, expected: tuple[str, bytes] | None) -> None:
    assert split_absolute_target(target) == expected


def test_outbound_router_round_robins_registered_endpoints_and_falls_back_to_dns() -> None:
    router = OutboundRouter(client_config(["10.0.0.1:9080", "10.0.0.2:9080"]))
    picks = [router.by_authority("reviews:9080") for _ in range(3)]
    assert [(pick.host, pick.port) for pick in picks if pick] == [
        ("10.0.0.1", 9080), ("10.0.0.2", 9080), ("10.0.0.1", 9080)]
    assert picks[0] == Destination("10.0.0.1", 9080, "reviews.default.svc.cluster.local:9080/*",
                                   "outbound|9080||reviews.default.svc.cluster.local", True, None)
    assert router.by_authority("reviews.default.svc.cluster.local:9080") is not None
    # A host no Service names: Istio's passthrough route, which has no decorator to send on.
    assert router.by_authority("www.example.com") == Destination(
        "www.example.com", 80, "www.example.com:80/*", "outbound|80||www.example.com", decorated=False)
    assert router.by_authority("[::1]:8080") == Destination("::1", 8080, "::1:8080/*", "outbound|8080||::1", False)
    assert router.by_authority("reviews:99999") is None
    assert router.by_authority("") is None


def test_outbound_router_transparent_goes_where_the_client_aimed() -> None:
    router = OutboundRouter(client_config(["10.0.0.1:9080"]))
    ratings = "ratings.default.svc.cluster.local"
    assert router.transparent("ratings:9080", ("10.96.0.7", 9080)) == Destination(
        "10.96.0.7", 9080, f"{ratings}:9080/*", f"outbound|9080||{ratings}", decorated=False)
    by_address = router.transparent("", ("10.96.0.7", 80))
    assert by_address is not None and by_address.operation == "10.96.0.7:80/*"


def test_inbound_router_maps_service_ports_to_app_ports() -> None:
    router = InboundRouter(server_config(18080))
    assert router.to_app(9080) == Destination("127.0.0.1", 18080, "reviews.default.svc.cluster.local:9080/*",
                                              "inbound|9080||")
    # undeclared ports pass through as is
    assert router.to_app(7070) == Destination("127.0.0.1", 7070, "reviews.default.svc.cluster.local:7070/*",
                                              "inbound|7070||")


def test_inbound_router_names_the_port_after_the_service_targeting_it() -> None:
    # Service reviews-alias port 80 -> targetPort 8090: Istio's inbound route decorator is the Service's
    # host and port, the cluster the workload port's (listener_inbound.go, httproute.go).
    base = server_config(18080)
    ports = (InboundPort(port=8090, app_port=8090, service_host="reviews-alias.default.svc.cluster.local",
                         service_port=80),)
    router = InboundRouter(replace(base, inbound=replace(base.inbound, ports=ports)))
    assert router.to_app(8090) == Destination("127.0.0.1", 8090, "reviews-alias.default.svc.cluster.local:80/*",
                                              "inbound|8090||")


def test_parse_sockaddr_in() -> None:
    raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 9080) + socket.inet_aton("10.96.0.7") + b"\0" * 8
    assert parse_sockaddr_in(raw) == ("10.96.0.7", 9080)
    assert parse_sockaddr_in(b"\0\0") is None


def test_load_proxy_config_reports_file_and_syntax_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_proxy_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("node: {podName: x\n")
    with pytest.raises(ConfigError, match="not valid YAML/JSON at line"):
        load_proxy_config(broken)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_proxy_config(empty)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"node": {"podName": "p", "namespace": "default", "canonicalService": "s"}, "listners": {}}')
    with pytest.raises(ConfigError) as error:
        load_proxy_config(wrong)
    assert "listners" in str(error.value)
    good = tmp_path / "good.json"
    good.write_text('{"version": "7", "node": {"podName": "p", "namespace": "default", "canonicalService": "s"}}')
    assert load_proxy_config(good).version == "7"


async def test_pool_drops_idle_connections_after_the_idle_timeout() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    key = ("127.0.0.1", int(server.sockets[0].getsockname()[1]))
    pool = UpstreamPool(Stats(), idle_timeout_s=0.1)
    connection = await pool.connect(key, 1.0)
    pool.give(connection)
    assert pool.idle_counts() == {f"{key[0]}:{key[1]}": 1}
    assert pool.take(key) is connection
    pool.give(connection)
    await asyncio.sleep(0.25)
    assert pool.take(key) is None
    assert connection.closed
    pool.close_idle()
    server.close()


async def test_a_fresh_connection_holds_a_greeting_but_an_idle_one_that_talks_is_dropped() -> None:
    talk: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: talk.append(w), "127.0.0.1", 0)
    key = ("127.0.0.1", int(server.sockets[0].getsockname()[1]))
    pool = UpstreamPool(Stats())
    connection = await pool.connect(key, 1.0)
    for _ in range(100):  # at most 1 s until the server has accepted
        if talk:
            break
        await asyncio.sleep(0.01)
    talk[0].write(b"220 hello\r\n")
    for _ in range(100):
        if connection.early:
            break
        await asyncio.sleep(0.01)
    assert connection.early == [b"220 hello\r\n"] and not connection.closed  # held for its owner
    assert connection.take_early() == [b"220 hello\r\n"] and connection.take_early() == []
    pool.give(connection)
    talk[0].write(b"unexpected\r\n")  # now idle in the pool: a confused upstream, never to be reused
    for _ in range(100):
        if connection.closed:
            break
        await asyncio.sleep(0.01)
    assert connection.closed and pool.take(key) is None
    server.close()


def test_a_destination_copies_and_pickles_as_an_equal_destination() -> None:
    """A native class with its own `__init__` in the compiled build (proxy/routing.py): rebuilt from its fields."""
    destination = Destination("10.0.0.1", 9080, "reviews.default.svc.cluster.local:9080/*",
                              "outbound|9080||reviews.default.svc.cluster.local", http2=True)
    for copied in (copy.copy(destination), copy.deepcopy(destination), pickle.loads(pickle.dumps(destination))):
        assert copied == destination and copied is not destination
