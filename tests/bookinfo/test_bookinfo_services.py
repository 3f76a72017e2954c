"""The Bookinfo services: Istio's APIs and behaviour, and the trace headers they pass on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import pytest
from bookinfo_servers import FakeBackend, bookinfo_app, serve

from tracemesh_bookinfo.headers import propagated_headers
from tracemesh_bookinfo.settings import SettingsError, settings_from_env

TRACE_HEADERS = {
    "x-request-id": "5d8a3c1e-1111-4a4a-9b9b-000000000001",
    "x-b3-traceid": "463ac35c9f6413ad48485a3953bb6124",
    "x-b3-spanid": "a2fb4a1d1a96d312",
    "x-b3-parentspanid": "0020000000000001",
    "x-b3-sampled": "1",
    "x-b3-flags": "1",
    "b3": "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1",
    "traceparent": "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01",
    "tracestate": "vendor=value",
    "uber-trace-id": "463ac35c9f6413ad48485a3953bb6124:a2fb4a1d1a96d312:0:1",
    "ot-tracer-traceid": "48485a3953bb6124",
    "x-ot-span-context": "48485a3953bb6124;a2fb4a1d1a96d312;0020000000000001;cs",
    "user-agent": "bookinfo-test/1.0",
    "cookie": "session=abc",
    "authorization": "Bearer token",
    "end-user": "jason",
}
NOT_PROPAGATED = {"x-private": "secret", "accept-language": "fr"}
ALL_SENT = {**TRACE_HEADERS, **NOT_PROPAGATED}


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, response.content_type, await response.text()


async def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, await response.json()


def assert_propagated(received: Any) -> None:
    for name, value in TRACE_HEADERS.items():
        assert received.get(name) == value, name
    for name in NOT_PROPAGATED:
        assert name not in received, name


# --------------------------------------------------------------------------------------------- headers


def test_propagated_headers_keep_trace_and_user_headers_only() -> None:
    kept = propagated_headers([("X-B3-TraceId", "a"), ("OT-Tracer-SpanId", "b"), ("Cookie", "c=1"), ("Cookie", "d=2"),
                               ("Host", "x"), ("Content-Length", "3"), ("x-private", "no")])
    assert sorted(kept.items()) == [("Cookie", "c=1"), ("Cookie", "d=2"), ("OT-Tracer-SpanId", "b"),
                                    ("X-B3-TraceId", "a")]


# --------------------------------------------------------------------------------------------- settings


def test_settings_defaults_are_istios() -> None:
    settings = settings_from_env({})
    assert (settings.port, settings.bind_address, settings.version) == (9080, "0.0.0.0", "v1")
    assert settings.details.url("/details/0") == "http://details:9080/details/0"
    assert settings.reviews.url("/r") == "http://reviews:9080/r"
    assert settings.ratings.url("/r") == "http://ratings:9080/r"
    assert not settings.ratings_enabled


def test_settings_from_istio_variables() -> None:
    settings = settings_from_env({"PORT": "8000", "DETAILS_HOSTNAME": "details-x", "DETAILS_SERVICE_PORT": "9999",
                                  "SERVICES_DOMAIN": "bookinfo.svc.cluster.local", "SERVICE_VERSION": "v3"})
    assert settings.port == 8000
    assert settings.details.url("/") == "http://details-x.bookinfo.svc.cluster.local:9999/"
    assert settings.ratings.url("/") == "http://ratings.bookinfo.svc.cluster.local:9080/"
    assert (settings.ratings_enabled, settings.star_color) == (True, "red")
    assert settings_from_env({"SERVICE_VERSION": "v2"}).star_color == "black"
    assert not settings_from_env({"SERVICE_VERSION": "v2", "ENABLE_RATINGS": "false"}).ratings_enabled


@pytest.mark.parametrize(("name", "value"), [("PORT", "http"), ("PORT", "70000"), ("RATINGS_SERVICE_PORT", "-1"),
                                             ("ENABLE_RATINGS", "yes")])
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        settings_from_env({name: value})


# --------------------------------------------------------------------------------------------- details, ratings


async def test_details() -> None:
    async with serve(bookinfo_app("details")) as port:
        status, body = await get_json(f"http://127.0.0.1:{port}/details/7")
        assert status == 200
        assert body["id"] == 7 and body["author"] == "William Shakespeare" and body["ISBN-10"] == "1234567890"
        assert await get_json(f"http://127.0.0.1:{port}/details/seven") == (
            400, {"error": "please provide numeric product id"})
        assert await get_json(f"http://127.0.0.1:{port}/health") == (200, {"status": "Details is healthy"})


async def test_ratings_get_post_and_errors() -> None:
    async with serve(bookinfo_app("ratings")) as port, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{port}"
        assert await get_json(f"{base}/ratings/0") == (200, {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}})
        async with session.post(f"{base}/ratings/1", json={"Reviewer1": 1, "Reviewer2": 2}) as response:
            assert response.status == 200
        assert await get_json(f"{base}/ratings/1") == (200, {"id": 1, "ratings": {"Reviewer1": 1, "Reviewer2": 2}})
        async with session.post(f"{base}/ratings/1", data=b"{not json") as response:
            assert (response.status, await response.json()) == (400, {"error": "please provide valid ratings JSON"})
        assert (await get_json(f"{base}/ratings/x"))[0] == 400
        assert await get_json(f"{base}/health") == (200, {"status": "Ratings is healthy"})


# --------------------------------------------------------------------------------------------- reviews


@asynccontextmanager
async def reviews_with_ratings(version: str, ratings: FakeBackend) -> AsyncIterator[str]:
    async with serve(ratings.app()) as ratings_port, serve(bookinfo_app(
            "reviews", SERVICE_VERSION=version, RATINGS_HOSTNAME="127.0.0.1",
            RATINGS_SERVICE_PORT=str(ratings_port), HOSTNAME="reviews-v9-abc")) as port:
        yield f"http://127.0.0.1:{port}"


async def test_reviews_v1_has_no_ratings_and_calls_nobody() -> None:
    ratings = FakeBackend(body={"id": 0, "ratings": {"Reviewer1": 3, "Reviewer2": 1}})
    async with reviews_with_ratings("v1", ratings) as base:
        status, body = await get_json(f"{base}/reviews/0", ALL_SENT)
    assert status == 200 and ratings.calls == []
    assert body["id"] == "0" and body["podname"] == "reviews-v9-abc"
    assert [review["reviewer"] for review in body["reviews"]] == ["Reviewer1", "Reviewer2"]
    assert all("rating" not in review for review in body["reviews"])


@pytest.mark.parametrize(("version", "color"), [("v2", "black"), ("v3", "red")])
async def test_reviews_v2_v3_show_ratings_stars_and_propagate_headers(version: str, color: str) -> None:
    ratings = FakeBackend(body={"id": 0, "ratings": {"Reviewer1": 3, "Reviewer2": 1}})
    async with reviews_with_ratings(version, ratings) as base:
        status, body = await get_json(f"{base}/reviews/0", ALL_SENT)
    assert status == 200
    assert [review["rating"] for review in body["reviews"]] == [{"stars": 3, "color": color},
                                                                {"stars": 1, "color": color}]
    [(path, headers)] = ratings.calls
    assert path == "/ratings/0"
    assert_propagated(headers)


@pytest.mark.parametrize("ratings_status", [500, 503, 404])
async def test_reviews_say_ratings_unavailable_when_ratings_fails(ratings_status: int) -> None:
    async with reviews_with_ratings("v2", FakeBackend(status=ratings_status)) as base:
        status, body = await get_json(f"{base}/reviews/0")
    assert status == 200
    assert [review["rating"] for review in body["reviews"]] == [
        {"error": "Ratings service is currently unavailable"}] * 2


async def test_reviews_say_ratings_unavailable_when_nothing_listens() -> None:
    async with serve(FakeBackend().app()) as dead_port:
        pass  # closed: connections to it are refused
    async with serve(bookinfo_app("reviews", SERVICE_VERSION="v3", RATINGS_HOSTNAME="127.0.0.1",
                                  RATINGS_SERVICE_PORT=str(dead_port))) as port:
        status, body = await get_json(f"http://127.0.0.1:{port}/reviews/0")
    assert status == 200 and body["reviews"][0]["rating"] == {"error": "Ratings service is currently unavailable"}


# --------------------------------------------------------------------------------------------- productpage


DETAILS_BODY = {"id": 0, "type": "hardcover", "pages": 321, "publisher": "PublisherZ", "language": "Latin",
                "ISBN-10": "0000000001", "ISBN-13": "000-0000000001"}
REVIEWS_BODY = {"id": "0", "reviews": [
    {"reviewer": "Reviewer1", "text": "Great <fun>", "rating": {"stars": 4, "color": "red"}},
    {"reviewer": "Reviewer2", "text": "Fine", "rating": {"error": "Ratings service is currently unavailable"}}]}


@asynccontextmanager
async def productpage_with(details: FakeBackend, reviews: FakeBackend, ratings: FakeBackend) -> AsyncIterator[str]:
    async with AsyncExitStack() as stack:
        ports = {name: await stack.enter_async_context(serve(backend.app()))
                 for name, backend in (("DETAILS", details), ("REVIEWS", reviews), ("RATINGS", ratings))}
        env = {f"{name}_HOSTNAME": "127.0.0.1" for name in ports}
        env.update({f"{name}_SERVICE_PORT": str(port) for name, port in ports.items()})
        port = await stack.enter_async_context(serve(bookinfo_app("productpage", **env)))
        yield f"http://127.0.0.1:{port}"


async def test_productpage_renders_details_and_reviews_and_propagates_headers() -> None:
    details, reviews, ratings = FakeBackend(body=DETAILS_BODY), FakeBackend(body=REVIEWS_BODY), FakeBackend()
    async with productpage_with(details, reviews, ratings) as base:
        status, content_type, html = await get(f"{base}/productpage", ALL_SENT)
    assert (status, content_type) == (200, "text/html")
    assert "The Comedy of Errors" in html
    assert "PublisherZ" in html and "321" in html and "hardcover" in html
    assert "Great &lt;fun&gt;" in html  # review text is escaped
    assert 'style="color:red" data-stars="4"' in html and "★★★★☆" in html
    assert "Ratings service is currently unavailable" in html
    assert "Error fetching" not in html
    assert [path for path, _ in details.calls] == ["/details/0"]
    assert [path for path, _ in reviews.calls] == ["/reviews/0"]
    assert ratings.calls == []
    for _, headers in details.calls + reviews.calls:
        assert_propagated(headers)


async def test_productpage_shows_error_boxes_when_backends_fail() -> None:
    async with productpage_with(FakeBackend(status=503), FakeBackend(status=500), FakeBackend()) as base:
        status, _, html = await get(f"{base}/productpage")
    assert status == 200
    assert "Error fetching product details!" in html
    assert "Sorry, product details are currently unavailable for this book." in html
    assert "Error fetching product reviews!" in html
    assert "Sorry, product reviews are currently unavailable for this book." in html


async def test_productpage_api() -> None:
    details, reviews = FakeBackend(body=DETAILS_BODY), FakeBackend(status=503)
    ratings = FakeBackend(body={"id": 3, "ratings": {"Reviewer1": 2}})
    async with productpage_with(details, reviews, ratings) as base:
        status, products = await get_json(f"{base}/api/v1/products")
        assert status == 200 and products[0]["id"] == 0 and products[0]["title"] == "The Comedy of Errors"
        assert await get_json(f"{base}/api/v1/products/3") == (200, DETAILS_BODY)
        assert await get_json(f"{base}/api/v1/products/3/reviews") == (
            503, {"error": "Sorry, product reviews are currently unavailable for this book."})
        assert await get_json(f"{base}/api/v1/products/3/ratings", ALL_SENT) == (200, ratings.body)
        assert await get(f"{base}/health") == (200, "text/plain", "Product page is healthy")
    assert [path for path, _ in details.calls] == ["/details/3"]
    assert [path for path, _ in reviews.calls] == ["/reviews/3"]
    assert_propagated(ratings.calls[0][1])


async def test_signed_in_user_travels_as_end_user() -> None:
    details, reviews = FakeBackend(body=DETAILS_BODY), FakeBackend(body=REVIEWS_BODY)
    # unsafe=True: keep cookies set by an IP-address host (127.0.0.1), as a browser would
    async with productpage_with(details, reviews, FakeBackend()) as base, \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.post(f"{base}/login", data={"username": "jason", "passwd": "x"}) as response:
            assert response.status == 200  # followed the redirect to the product page
            assert "Signed in as <b>jason</b>" in await response.text()
        async with session.post(f"{base}/logout") as response:
            assert "Sign in" in await response.text()
    assert [headers.get("end-user") for _, headers in reviews.calls] == ["jason", None]


async def test_outbound_calls_go_through_http_proxy_in_absolute_form(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local mode: HTTP_PROXY points at the sidecar, which must see `GET http://details:9080/... HTTP/1.1`."""
    request_lines: list[str] = []

    async def fake_proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            request_lines.append(line.decode().strip())
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(fake_proxy, "127.0.0.1", 0)
    proxy_port = server.sockets[0].getsockname()[1]
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
    try:
        async with serve(bookinfo_app("productpage")) as port:
            status, _, html = await get(f"http://127.0.0.1:{port}/productpage")
    finally:
        server.close()
        await server.wait_closed()
    assert status == 200 and "Error fetching" not in html  # the answers came back through the proxy
    assert request_lines == ["GET http://details:9080/details/0 HTTP/1.1", "GET http://reviews:9080/reviews/0 HTTP/1.1"]


# --------------------------------------------------------------------------------------------- the entry


def test_entry_serves_on_port_and_stops_cleanly_on_sigterm() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PORT": str(port), "BIND_ADDRESS": "127.0.0.1"}
    process = subprocess.Popen([sys.executable, "-m", "tracemesh_bookinfo", "ratings"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"ratings listening on 127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    assert json.load(response) == {"status": "Ratings is healthy"}
                break
            except OSError:
                assert time.monotonic() < deadline, "ratings never answered"
                time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_entry_rejects_a_bad_port_and_an_unknown_service() -> None:
    env = {**os.environ, "PORT": "not-a-port"}
    result = subprocess.run([sys.executable, "-m", "tracemesh_bookinfo", "details"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "PORT='not-a-port' is not a port" in result.stderr
    result = subprocess.run([sys.executable, "-m", "tracemesh_bookinfo", "catalogue"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_services_import_nothing_but_aiohttp() -> None:
    """The images ship only tracemesh_bookinfo and aiohttp: the services must not import the rest of tracemesh."""
    code = ("import sys, tracemesh_bookinfo.server; print(sorted(m for m in sys.modules "
            "if m.startswith('tracemesh') and not m.startswith('tracemesh_bookinfo')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == "[]"
