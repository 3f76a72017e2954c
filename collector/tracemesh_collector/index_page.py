"""The HTML page at `/`: where each API of this collector listens and what it answers."""

from __future__ import annotations

from html import escape

ZIPKIN_ENDPOINTS = (
    ("POST", "/api/v2/spans", "ingest Zipkin v2 spans (application/json or application/x-protobuf)"),
    ("GET", "/api/v2/services", "service names"),
    ("GET", "/api/v2/spans?serviceName=", "span names of a service"),
    ("GET", "/api/v2/remoteServices?serviceName=", "services a service calls"),
    ("GET", "/api/v2/traces?serviceName=&spanName=&annotationQuery=&minDuration=&maxDuration=&endTs=&lookback=&limit=",
     "search traces, newest first"),
    ("GET", "/api/v2/trace/{traceId}", "one trace"),
    ("GET", "/api/v2/traceMany?traceIds=", "several traces"),
    ("GET", "/api/v2/dependencies?endTs=&lookback=", "service dependency links"),
    ("GET", "/api/v2/autocompleteKeys", "tag keys offered for autocompletion (none configured)"),
)
OTLP_ENDPOINTS = (
    ("POST", "/v1/traces", "ingest OTLP/HTTP (application/x-protobuf or application/json)"),
)
OTLP_GRPC_METHODS = (
    ("gRPC", "/opentelemetry.proto.collector.trace.v1.TraceService/Export", "ingest OTLP/gRPC (gzip or uncompressed)"),
)
JAEGER_ENDPOINTS = (
    ("GET", "/api/services", "service names"),
    ("GET", "/api/services/{service}/operations", "operation names of a service"),
    ("GET", "/api/operations?service=&spanKind=", "operations with their span kinds"),
    ("GET", "/api/traces?service=&operation=&tags=&minDuration=&maxDuration=&start=&end=&limit=", "search traces"),
    ("GET", "/api/traces/{traceID}", "one trace"),
    ("GET", "/api/dependencies?endTs=&lookback=", "service dependency links"),
)


def render_index(zipkin_url: str, otlp_url: str, jaeger_url: str, span_count: int, max_spans: int,
                 otlp_grpc_target: str) -> str:
    sections = [
        _section("Zipkin v2 API", zipkin_url, ZIPKIN_ENDPOINTS),
        _section("OTLP/HTTP", otlp_url, OTLP_ENDPOINTS),
        _section("OTLP/gRPC", otlp_grpc_target, OTLP_GRPC_METHODS),
        _section("Jaeger query API", jaeger_url, JAEGER_ENDPOINTS),
    ]
    return (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>tracemesh collector</title></head><body>\n"
        "<h1>tracemesh collector</h1>\n"
        f"<p>{span_count} spans stored (at most {max_spans}, oldest traces evicted first). "
        "Every port also answers <code>GET /health</code>.</p>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def _section(title: str, base_url: str, endpoints: tuple[tuple[str, str, str], ...]) -> str:
    rows = []
    for method, path, description in endpoints:
        target = escape(base_url + path)
        shown = f'<a href="{target}">{target}</a>' if method == "GET" and "{" not in path else target
        rows.append(f"<li><code>{method} {shown}</code> — {escape(description)}</li>")
    return f"<h2>{escape(title)} on {escape(base_url)}</h2>\n<ul>\n" + "\n".join(rows) + "\n</ul>"
