"""Istio's tracing integration-test helpers, ported from istio/istio
`tests/integration/telemetry/tracing/tracing.go` and `pkg/test/framework/components/zipkin/kube.go`
(Copyright Istio Authors, Apache License 2.0).

The shape checks are Istio's own: a trace is read back through the Zipkin API exactly as Istio's
zipkin component queries it (`limit`, `spanName`, `annotationQuery`, nothing else), every span's
children are found by `parentId` and ordered by name, and a trace matches when one of its
non-gateway roots has the wanted name and service name and, recursively, exactly the wanted children.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

# tracing.go: const TraceHeader
TRACE_HEADER = "x-client-trace-id"
# The echo deployment of tracing.go's TestSetup: `client-<cluster>` and `server`, whose `http` port is
# Service port 80 on workload port 8090 and whose `tcp` port is 9000.
CLUSTER_NAME = "primary"
SERVER_HTTP_PORT = 80
SERVER_WORKLOAD_PORT = 8090
SERVER_TCP_PORT = 9000
# The ingress gateway of Istio's test framework: `ingInst.ServiceName()` in `ingInst.Namespace()`.
INGRESS_SERVICE_FQDN = "istio-ingressgateway.istio-system"


@dataclass
class Span:
    """kube.go's Span: the four fields Istio's checks read, and the children found by parentId."""

    span_id: str = ""
    parent_span_id: str = ""
    service_name: str = ""
    name: str = ""
    child_spans: list[Span] = field(default_factory=list)


def extract_traces(traces: Sequence[Sequence[dict[str, Any]]]) -> list[list[Span]]:
    """kube.go's extractTraces: spans per trace with their children linked, children sorted by name."""
    result = []
    for trace in traces:
        spans = [Span(span_id=raw.get("id", ""), parent_span_id=raw.get("parentId", ""),
                      service_name=(raw.get("localEndpoint") or {}).get("serviceName", ""), name=raw.get("name", ""))
                 for raw in trace]
        for parent in spans:
            parent.child_spans = sorted((child for child in spans if child.parent_span_id == parent.span_id),
                                        key=lambda child: child.name)
        if spans:
            result.append(spans)
    return result


def is_non_gateway_root(span: Span) -> bool:
    """tracing.go's isNonGatewayRoot."""
    if span.parent_span_id:
        return False
    return "egressgateway" not in span.service_name and "ingressgateway" not in span.service_name


def compare_trace(got: Span, want: Span, log: list[str]) -> bool:
    """tracing.go's CompareTrace: names and service names equal, the same number of children, recursively."""
    if got.name != want.name or got.service_name != want.service_name:
        log.append(f"got span {got.name!r} of {got.service_name!r}, want {want.name!r} of {want.service_name!r}")
        return False
    if len(got.child_spans) != len(want.child_spans):
        log.append(f"span {got.name!r} of {got.service_name!r}: got {len(got.child_spans)} child spans, "
                   f"want {len(want.child_spans)}")
        return False
    return all(compare_trace(g, w, log) for g, w in zip(got.child_spans, want.child_spans, strict=True))


def want_trace_root(namespace: str, cluster_name: str = CLUSTER_NAME) -> Span:
    """tracing.go's WantTraceRoot (WantOtelTraceRoot is the same tree): the client's CLIENT span with the
    server's SERVER span below it, both named after the Service port the client called."""
    name = f"server.{namespace}.svc.cluster.local:{SERVER_HTTP_PORT}/*"
    server_span = Span(name=name, service_name=f"server.{namespace}")
    return Span(name=name, service_name=f"client-{cluster_name}.{namespace}", child_spans=[server_span])


def verify_echo_traces(namespace: str, traces: list[list[Span]], log: list[str],
                       cluster_name: str = CLUSTER_NAME) -> bool:
    """tracing.go's VerifyEchoTraces / VerifyOtelEchoTraces."""
    wanted = want_trace_root(namespace, cluster_name)
    return any(is_non_gateway_root(span) and compare_trace(span, wanted, log) for trace in traces for span in trace)


def want_otel_ingress_trace_root(namespace: str, path: str) -> Span:
    """tracing.go's WantOtelIngressTraceRoot: the gateway's span named after its route, the router's upstream span
    below it, and the server's SERVER span below that, named after the gateway's route too."""
    name = f"server.{namespace}.svc.cluster.local:{SERVER_HTTP_PORT}{path}"
    server_span = Span(name=name, service_name=f"server.{namespace}")
    upstream = Span(name=f"router outbound|{SERVER_HTTP_PORT}||server.{namespace}.svc.cluster.local; egress",
                    service_name=INGRESS_SERVICE_FQDN, child_spans=[server_span])
    return Span(name=name, service_name=INGRESS_SERVICE_FQDN, child_spans=[upstream])


def verify_otel_ingress_traces(namespace: str, path: str, traces: list[list[Span]], log: list[str]) -> bool:
    """tracing.go's VerifyOtelIngressTraces: a root span (gateway roots included) matching the wanted tree."""
    wanted = want_otel_ingress_trace_root(namespace, path)
    return any(not span.parent_span_id and compare_trace(span, wanted, log) for trace in traces for span in trace)


async def query_traces(session: aiohttp.ClientSession, base_url: str, limit: int, span_name: str,
                       annotation_query: str) -> list[list[Span]]:
    """kube.go's QueryTraces: GET /api/v2/traces with exactly Istio's three parameters (empty ones included)."""
    params = {"limit": str(limit), "spanName": span_name, "annotationQuery": annotation_query}
    async with session.get(f"{base_url}/api/v2/traces", params=params) as response:
        assert response.status == 200, f"{response.status}: {await response.text()}"
        return extract_traces(await response.json())
