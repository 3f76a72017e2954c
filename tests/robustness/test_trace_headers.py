"""Malformed trace headers of every format: forwarded and answered normally, a fresh valid context sent on."""

from __future__ import annotations

import re

import pytest
from proxy_harness import request, server_config, sidecar
from robust_harness import CountingOrigin

VALID_TRACE_ID = re.compile(r"^(?:[0-9a-f]{16}|[0-9a-f]{32})$")
SPAN = "a2fb4a1d1a96d312"
TRACE = "463ac35c9f6413ad48485a3953bb6124"
HUGE = "f" * 8000

# The sidecar under test reports to zipkin under USE_B3: like Envoy's zipkin tracer it reads neither W3C nor
# Jaeger/OT headers (so cannot find them malformed), and passes them on as received.
NOT_READ = (b"traceparent", b"tracestate", b"uber-trace-id", b"ot-tracer-traceid", b"ot-tracer-spanid",
            b"ot-tracer-sampled")

# (id, headers, the proxy must count it as malformed)
CASES: list[tuple[str, list[tuple[bytes, bytes]], bool]] = [
    ("b3-short-trace-id", [(b"x-b3-traceid", b"abc"), (b"x-b3-spanid", SPAN.encode())], True),
    ("b3-not-hex", [(b"x-b3-traceid", b"z" * 32), (b"x-b3-spanid", SPAN.encode())], True),
    ("b3-all-zero", [(b"x-b3-traceid", b"0" * 32), (b"x-b3-spanid", b"0" * 16)], True),
    ("b3-huge", [(b"x-b3-traceid", HUGE.encode()), (b"x-b3-spanid", HUGE.encode())], True),
    ("b3-no-span-id", [(b"x-b3-traceid", TRACE.encode())], True),
    ("b3-bad-sampled", [(b"x-b3-traceid", TRACE.encode()), (b"x-b3-spanid", SPAN.encode()),
                        (b"x-b3-sampled", b"maybe")], False),
    ("b3-bad-parent", [(b"x-b3-traceid", TRACE.encode()), (b"x-b3-spanid", SPAN.encode()),
                       (b"x-b3-parentspanid", b"xyz")], False),
    ("b3-bad-flags", [(b"x-b3-flags", b"\xff\xfe"), (b"x-b3-sampled", b"")], False),
    ("b3-repeated", [(b"x-b3-traceid", TRACE.encode()), (b"x-b3-traceid", TRACE[:16].encode()),
                     (b"x-b3-spanid", SPAN.encode())], True),
    ("b3-non-latin", [(b"x-b3-traceid", "é".encode() * 16), (b"x-b3-spanid", b"\x80" * 16)], True),
    ("b3-single-garbage", [(b"b3", b"garbage")], True),
    ("b3-single-zero", [(b"b3", b"0-0-1")], True),
    ("b3-single-too-many-fields", [(b"b3", f"{TRACE}-{SPAN}-1-{SPAN}-extra".encode())], True),
    ("b3-single-dashes", [(b"b3", b"---")], True),
    ("b3-single-bad-sampled", [(b"b3", f"{TRACE}-{SPAN}-7".encode())], True),
    ("traceparent-garbage", [(b"traceparent", b"garbage")], False),
    ("traceparent-version-ff", [(b"traceparent", f"ff-{TRACE}-{SPAN}-01".encode())], False),
    ("traceparent-zero-trace", [(b"traceparent", f"00-{'0' * 32}-{SPAN}-01".encode())], False),
    ("traceparent-zero-span", [(b"traceparent", f"00-{TRACE}-{'0' * 16}-01".encode())], False),
    ("traceparent-short", [(b"traceparent", f"00-{TRACE[:30]}-{SPAN}-01".encode())], False),
    ("traceparent-upper-hex", [(b"traceparent", f"00-{TRACE.upper()}-{SPAN}-01".encode())], False),
    ("traceparent-v00-extra-field", [(b"traceparent", f"00-{TRACE}-{SPAN}-01-extra".encode())], False),
    ("traceparent-huge-tracestate", [(b"traceparent", b"garbage"), (b"tracestate", HUGE.encode())], False),
    ("tracestate-alone", [(b"tracestate", b"a=,,,=,b=" + HUGE.encode())], False),
    ("uber-trace-id-garbage", [(b"uber-trace-id", b":::")], False),
    ("ot-garbage", [(b"ot-tracer-traceid", b"zz"), (b"ot-tracer-spanid", b""), (b"ot-tracer-sampled", b"x")], False),
    ("request-id-empty", [(b"x-request-id", b"")], False),
    ("request-id-huge", [(b"x-request-id", HUGE.encode())], False),
    ("everything-broken", [(b"x-b3-traceid", b"1"), (b"b3", b"1-2"), (b"traceparent", b"00"),
                           (b"x-b3-sampled", b"2")], True),
]


@pytest.mark.parametrize(("headers", "malformed"), [pytest.param(h, m, id=name) for name, h, m in CASES])
async def test_malformed_trace_headers_are_forwarded_with_a_fresh_context(
        counting_origin: CountingOrigin, headers: list[tuple[bytes, bytes]], malformed: bool) -> None:
    raw = b"GET /traced HTTP/1.1\r\nHost: reviews\r\n" + b"".join(b"%s: %s\r\n" % pair for pair in headers) + b"\r\n"
    async with sidecar(server_config(counting_origin.port)) as server_side:
        response = await request(server_side.inbound_port, raw, timeout_s=3.0)
        counted = server_side.stats.get("tracing.malformed_trace_headers")
        spans = await server_side.exporters.wait_spans(1, timeout_s=2.0)
    assert response.status == 200
    assert counting_origin.paths() == ["/traced"]
    forwarded = counting_origin.seen[0].headers
    trace_ids = [value for name, value in forwarded if name == "x-b3-traceid"]
    assert len(trace_ids) == 1 and VALID_TRACE_ID.match(trace_ids[0]), trace_ids
    assert len([value for name, value in forwarded if name == "x-b3-spanid"]) == 1
    assert spans[0].tags["http.status_code"] == "200"
    if malformed:
        assert counted >= 1
    for name, value in headers:
        if name in NOT_READ:
            assert (name.decode(), value.decode("latin-1")) in forwarded
