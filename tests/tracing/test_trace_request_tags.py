"""Span tags a request asks for (a tags header, W3C baggage keys), the trace id response header, and the
service-name overrides: a provider's tracemesh extensions after Kong's Zipkin plugin."""

from __future__ import annotations

import pytest
from trace_hop_helpers import config, inbound_request, outbound_request, provider, response

from tracemesh_sidecar.stats import Stats
from tracemesh_sidecar.tracing import HopTracer
from tracemesh_sidecar.tracing.request_tags import (
    MAX_BAGGAGE_MEMBERS,
    MAX_REQUEST_TAGS,
    MAX_TAG_VALUE,
    MAX_TAGS_HEADER_BYTES,
    baggage_values,
    parse_tags_header,
)
from tracemesh_sidecar.tracing.spanbuilder import MALFORMED_REQUEST_TAGS


# Kong's spec/03-plugins/34-zipkin/request_tags_spec.lua cases, and the bounds.
@pytest.mark.parametrize(("value", "tags", "malformed"), [
    ("fg=blue; bg=red", {"fg": "blue", "bg": "red"}, 0),
    ("foobar;foo=;=bar;keep=true;=", {"keep": "true"}, 4),
    (";;foo=bar;;;;baz=qux;;", {"foo": "bar", "baz": "qux"}, 0),
    ("foo bar=baz", {}, 1),
    ("  fg  =  blue  ;;  ", {"fg": "blue"}, 0),
    ("a=b=c", {"a=b": "c"}, 0),  # Lua's greedy %S+: the name runs to the last `=` before the value
    ("x y=1; ok=2", {"ok": "2"}, 1),
    ("novalue=; =noname; bare; ok=1", {"ok": "1"}, 3),
    ("one=1 two", {"one": "1 two"}, 0),
    ("; ".join(f"t{n}=v" for n in range(MAX_REQUEST_TAGS + 3)), {f"t{n}": "v" for n in range(MAX_REQUEST_TAGS)}, 3),
    (f"long={'v' * (MAX_TAG_VALUE + 1)}; ok=1", {"ok": "1"}, 1),
    ("ok=1;" + "x" * MAX_TAGS_HEADER_BYTES, {}, 1),
])
def test_tags_header(value: str, tags: dict[str, str], malformed: int) -> None:
    assert parse_tags_header(value) == (tags, malformed)


@pytest.mark.parametrize(("value", "found", "malformed"), [
    ("tenant=acme,user=bob", {"tenant": "acme"}, 0),
    (" tenant = ac%20me ;prop=1 , other=x", {"tenant": "ac me"}, 0),
    ("garbage,tenant=acme", {"tenant": "acme"}, 1),
    (",".join(f"k{n}=v" for n in range(MAX_BAGGAGE_MEMBERS)) + ",tenant=late", {}, 1),
    ("tenant=" + "v" * (MAX_TAG_VALUE + 1), {}, 1),
])
def test_baggage_values(value: str, found: dict[str, str], malformed: int) -> None:
    assert baggage_values(value, {"tenant"}) == (found, malformed)


def test_request_tags_join_the_span_and_never_replace_the_proxys_own() -> None:
    stats = Stats()
    tracer = HopTracer(config(provider(tags_header="zipkin-tags", baggage_tags=("tenant",))), "outbound", stats)
    headers = {"zipkin-tags": "fg=blue; http.status_code=999; bad", "baggage": "tenant=acme,user=bob"}
    hop = tracer.start(outbound_request(headers), 0)
    span = hop.finish(response(), 10)
    assert span is not None
    assert (span.tags["fg"], span.tags["tenant"], span.tags["http.status_code"]) == ("blue", "acme", "200")
    assert "user" not in span.tags
    assert stats.get(MALFORMED_REQUEST_TAGS) == 1
    assert ("baggage", "tenant=acme,user=bob") not in hop.headers_to_set
    assert "baggage" not in hop.headers_to_remove  # passed through untouched


def test_without_the_extensions_request_headers_add_no_tags() -> None:
    tracer = HopTracer(config(provider()), "outbound", Stats())
    span = tracer.start(outbound_request({"zipkin-tags": "fg=blue", "baggage": "tenant=acme"}), 0).finish(
        response(), 10)
    assert span is not None and "fg" not in span.tags and "tenant" not in span.tags


def test_trace_id_response_header_on_the_inbound_hop_only() -> None:
    cfg = config(provider(response_header_for_trace_id="x-trace-id"))
    inbound = HopTracer(cfg, "inbound", Stats()).start(inbound_request(), 0)
    span = inbound.finish(response(), 10)
    assert span is not None and inbound.response_header_line == f"x-trace-id: {span.trace_id}\r\n".encode()
    assert HopTracer(cfg, "outbound", Stats()).start(outbound_request(), 0).response_header_line == b""
    assert HopTracer(config(provider()), "inbound", Stats()).start(inbound_request(), 0).response_header_line == b""


def test_service_name_overrides() -> None:
    """Kong's local_service_name names the proxy (localEndpoint); default_service_name the remote endpoint."""
    cfg = config(provider(local_service_name="edge", default_service_name="upstream-app"))
    span = HopTracer(cfg, "outbound", Stats()).start(outbound_request(), 0).finish(response(), 10)
    assert span is not None and span.remote_endpoint is not None
    assert (span.local_endpoint.service_name, span.remote_endpoint.service_name) == ("edge", "upstream-app")
    default = HopTracer(config(provider()), "outbound", Stats()).start(outbound_request(), 0).finish(response(), 10)
    assert default is not None and default.remote_endpoint is not None
    assert (default.local_endpoint.service_name, default.remote_endpoint.service_name) == (
        "productpage.default", None)
