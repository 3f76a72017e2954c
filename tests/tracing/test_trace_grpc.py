"""gRPC tags on a hop's span, as Envoy's tracers set them.

Ported from Envoy's test/common/tracing/http_tracer_impl_test.cc (HttpConnManFinalizerImplTest.GrpcOkStatus,
.GrpcErrorTag, .GrpcTrailersOnly; HttpTracerImplTest.ChildGrpcUpstreamSpanTest) and test/common/grpc/common_test.cc
(GrpcContextTest.HasGrpcContentType, .IsGrpcRequestHeader); the error rule is addGrpcResponseTags' in
source/common/tracing/http_tracer_impl.cc after envoy issue 18877.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from trace_hop_helpers import config, inbound_request, outbound_request, provider, response

from tracemesh_sidecar.config.model import CustomTag, ProxyConfig
from tracemesh_sidecar.proxy.grpc import grpc_local_reply
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.stats import Stats
from tracemesh_sidecar.tracing import HopTracer, RequestFacts, ResponseFacts
from tracemesh_sidecar.tracing.facts import Direction

START = 1_763_700_000_000_000
GRPC_HEADERS = {"content-type": "application/grpc", "te": "trailers"}
GRPC_TAGS = ("grpc.path", "grpc.authority", "grpc.content_type", "grpc.timeout", "grpc.status_code", "grpc.message")


def grpc_request(headers: dict[str, str] | None = None, **changes: Any) -> RequestFacts:
    """Envoy's test request: POST /pb.Foo/Bar to example.com:80 over HTTP/2, no user-agent."""
    facts = {"method": "POST", "target": "/pb.Foo/Bar", "authority": "example.com:80", "protocol": "HTTP/2",
             "headers": {**GRPC_HEADERS, **(headers or {})}, **changes}
    return replace(outbound_request(), **facts)


def span_of(request: RequestFacts, reply: ResponseFacts, proxy_config: ProxyConfig | None = None,
            direction: Direction = "outbound") -> Span:
    hop = HopTracer(proxy_config or config(provider()), direction, Stats(), {}).start(request, START)
    span = hop.finish(reply, START + 10)
    assert span is not None
    return span


def grpc_tags(span: Span) -> dict[str, str]:
    return {name: value for name, value in span.tags.items() if name.startswith("grpc.")}


def test_grpc_ok_status_http_tracer_impl_test_GrpcOkStatus() -> None:
    span = span_of(grpc_request(), response(status=200, request_size=10, response_size=11,
                                            grpc_status="0", grpc_message=""))
    assert grpc_tags(span) == {
        "grpc.path": "/pb.Foo/Bar", "grpc.authority": "example.com:80", "grpc.content_type": "application/grpc",
        "grpc.status_code": "0", "grpc.message": "",
    }
    assert {name: span.tags[name] for name in ("http.url", "http.method", "http.protocol", "http.status_code",
                                               "user_agent", "request_size", "response_size", "response_flags",
                                               "component")} == {
        "http.url": "http://example.com:80/pb.Foo/Bar", "http.method": "POST", "http.protocol": "HTTP/2",
        "http.status_code": "200", "user_agent": "-", "request_size": "10", "response_size": "11",
        "response_flags": "-", "component": "proxy",
    }
    assert "error" not in span.tags


def test_grpc_error_tag_http_tracer_impl_test_GrpcErrorTag() -> None:
    span = span_of(grpc_request({"grpc-timeout": "10s"}),
                   response(status=200, grpc_status="14", grpc_message="unavailable"))
    assert grpc_tags(span) == {
        "grpc.path": "/pb.Foo/Bar", "grpc.authority": "example.com:80", "grpc.content_type": "application/grpc",
        "grpc.timeout": "10s",  # the header's value as it came, even one getGrpcTimeout would not parse
        "grpc.status_code": "14", "grpc.message": "unavailable",
    }
    assert span.tags["http.status_code"] == "200" and span.tags["error"] == "true"


def test_grpc_trailers_only_http_tracer_impl_test_GrpcTrailersOnly() -> None:
    """A trailers-only response: the proxy passes the headers' grpc-status and grpc-message; same tags."""
    span = span_of(grpc_request(), response(status=200, grpc_status="14", grpc_message="unavailable"))
    assert span.tags["grpc.status_code"] == "14" and span.tags["grpc.message"] == "unavailable"
    assert span.tags["http.status_code"] == "200" and span.tags["error"] == "true"


def test_grpc_status_tags_on_any_response_http_tracer_impl_test_ChildGrpcUpstreamSpanTest() -> None:
    """Response tags follow the response's grpc-status alone; request tags need a gRPC request."""
    span = span_of(outbound_request(), response(status=200, grpc_status="14", grpc_message="unavailable"))
    assert grpc_tags(span) == {"grpc.status_code": "14", "grpc.message": "unavailable"}
    assert span.tags["error"] == "true"


def test_grpc_status_without_message_sets_no_message_tag() -> None:
    span = span_of(grpc_request(), response(status=200, grpc_status="0"))
    assert span.tags["grpc.status_code"] == "0" and "grpc.message" not in span.tags


def test_plain_http_span_has_no_grpc_tags() -> None:
    span = span_of(outbound_request({"grpc-timeout": "1S"}), response())
    assert grpc_tags(span) == {}


# The error rule: envoy issue 18877 — only the codes that are the server's fault.
SERVER_ERRORS = {"2": "UNKNOWN", "4": "DEADLINE_EXCEEDED", "8": "RESOURCE_EXHAUSTED", "12": "UNIMPLEMENTED",
                 "13": "INTERNAL", "14": "UNAVAILABLE", "15": "DATA_LOSS"}
NOT_ERRORS = {"0": "OK", "1": "CANCELLED", "3": "INVALID_ARGUMENT", "5": "NOT_FOUND", "6": "ALREADY_EXISTS",
              "7": "PERMISSION_DENIED", "9": "FAILED_PRECONDITION", "10": "ABORTED", "11": "OUT_OF_RANGE",
              "16": "UNAUTHENTICATED"}


@pytest.mark.parametrize("code", list(SERVER_ERRORS), ids=list(SERVER_ERRORS.values()))
def test_server_side_grpc_codes_set_error_issue_18877(code: str) -> None:
    span = span_of(grpc_request(), response(status=200, grpc_status=code))
    assert span.tags["error"] == "true"


@pytest.mark.parametrize("code", list(NOT_ERRORS), ids=list(NOT_ERRORS.values()))
def test_ok_and_client_side_grpc_codes_leave_error_unset_issue_18877(code: str) -> None:
    span = span_of(grpc_request(), response(status=200, grpc_status=code))
    assert span.tags["grpc.status_code"] == code and "error" not in span.tags


# Envoy's getGrpcStatus (source/common/grpc/common.cc): empty is no status, and a value that is not a number
# from 0 to 16 is InvalidCode (common_test.cc GetGrpcStatus: "-1", "1024"); neither sets `error`. absl::SimpleAtoi
# accepts surrounding whitespace and a '+', so those still read as the code.
@pytest.mark.parametrize(("value", "error"), [
    ("", False), ("-1", False), ("1024", False), ("17", False), ("UNAVAILABLE", False), ("14.0", False),
    ("+14", True), (" 14 ", True), ("014", True),
])
def test_grpc_status_parsed_as_envoys_getGrpcStatus(value: str, error: bool) -> None:
    span = span_of(grpc_request(), response(status=200, grpc_status=value))
    assert span.tags["grpc.status_code"] == value  # the tag is the header's value as it came
    assert ("error" in span.tags) is error


@pytest.mark.parametrize("status", [500, 503, 0])
def test_http_error_stays_an_error_with_grpc_ok(status: int) -> None:
    """Envoy's setCommonTags sets `error` for a 5xx or no response; a grpc-status OK never clears it."""
    span = span_of(grpc_request(), response(status=status, grpc_status="0"))
    assert span.tags["error"] == "true"


# GrpcContextTest.HasGrpcContentType (test/common/grpc/common_test.cc).
@pytest.mark.parametrize(("content_type", "grpc"), [
    ("", False), ("application/text", False), ("application/grpc", True), ("application/grpc+", True),
    ("application/grpc+foo", True), ("application/grpc-", False), ("application/grpc-web", False),
    ("application/grpc-web+foo", False), ("application/grpc;charset=utf-8", False), ("Application/gRPC", False),
])
def test_grpc_request_tags_by_content_type_common_test_HasGrpcContentType(content_type: str, grpc: bool) -> None:
    span = span_of(grpc_request({"content-type": content_type}), response())
    assert ("grpc.path" in span.tags) is grpc
    if grpc:
        assert span.tags["grpc.content_type"] == content_type


def test_connect_is_not_a_grpc_request_common_test_IsGrpcRequestHeader() -> None:
    """isGrpcRequestHeaders needs a :path, which a CONNECT does not have."""
    span = span_of(grpc_request(method="CONNECT", target="example.com:80"), response())
    assert grpc_tags(span) == {}


def test_grpc_over_http1_is_tagged_too() -> None:
    """isGrpcRequestHeaders looks at the headers, not the protocol."""
    span = span_of(grpc_request(protocol="HTTP/1.1"), response(grpc_status="0"))
    assert span.tags["grpc.path"] == "/pb.Foo/Bar" and span.tags["http.protocol"] == "HTTP/1.1"


def test_grpc_path_is_not_cut_by_max_tag_length() -> None:
    """buildOriginalUri cuts the path in http.url; addGrpcRequestTags tags the :path whole."""
    method = "/pb.Foo/" + "Bar" * 100
    span = span_of(grpc_request(target=method), response(), config(provider(max_tag_length=20)))
    assert span.tags["grpc.path"] == method
    assert span.tags["http.url"] == "http://example.com:80" + method[:20]


def test_grpc_path_of_an_absolute_form_target_is_its_path() -> None:
    span = span_of(grpc_request(target="http://example.com:80/pb.Foo/Bar?x=1"), response())
    assert span.tags["grpc.path"] == "/pb.Foo/Bar?x=1"


@pytest.mark.parametrize("direction", ["outbound", "inbound"])
def test_client_and_server_spans_both_carry_grpc_tags(direction: Direction) -> None:
    """Istio's CLIENT and SERVER spans are both downstream spans (finalizeDownstreamSpan)."""
    request = grpc_request() if direction == "outbound" else inbound_request(
        method="POST", target="/pb.Foo/Bar", authority="example.com:80", protocol="HTTP/2", headers=GRPC_HEADERS)
    span = span_of(request, response(grpc_status="13", grpc_message="boom"), direction=direction)
    assert span.kind == ("CLIENT" if direction == "outbound" else "SERVER")
    assert span.tags["grpc.path"] == "/pb.Foo/Bar" and span.tags["grpc.status_code"] == "13"
    assert span.tags["error"] == "true"


def test_custom_tags_replace_grpc_request_tags_not_response_tags() -> None:
    """Envoy's finalizeDownstreamSpan: request tags, then custom tags (setCommonTags), then the response's gRPC
    tags (onUpstreamResponseHeaders/Trailers)."""
    custom = (CustomTag(name="grpc.path", kind="literal", source="custom"),
              CustomTag(name="grpc.status_code", kind="literal", source="custom"))
    span = span_of(grpc_request(), response(grpc_status="5"), config(provider(), custom_tags=custom))
    assert span.tags["grpc.path"] == "custom" and span.tags["grpc.status_code"] == "5"


def test_local_reply_span_reports_200_and_the_mapped_grpc_status() -> None:
    """The proxy's 503 to a gRPC client is a trailers-only 200 (proxy/grpc.py); Envoy's span keeps the :status
    it sent (http.status_code "200") and is an error by grpc-status 14 and the response flag."""
    block = dict(grpc_local_reply(503, "no healthy upstream"))
    reply = response(status=int(block[b":status"]), response_size=0, response_flags="UH", upstream=None,
                     grpc_status=block[b"grpc-status"].decode(), grpc_message=block[b"grpc-message"].decode())
    span = span_of(grpc_request(), reply)
    assert span.tags["http.status_code"] == "200" and span.tags["error"] == "true"
    assert span.tags["grpc.status_code"] == "14" and span.tags["grpc.message"] == "no healthy upstream"
