"""The span one proxy hop reports, shaped as the mesh contract's span table says.

Everything that is the same for every span of one (config, direction) is computed once in the
constructor, so that building a span is a dict copy plus the per-request tags: this runs for every
sampled request.
"""

from __future__ import annotations

from collections.abc import Mapping

from tracemesh_sidecar.config.model import CustomTag, NodeIdentity, ProviderConfig, TracingPolicy
from tracemesh_sidecar.spans.model import Endpoint, Span, SpanKind
from tracemesh_sidecar.stats import Stats
from tracemesh_sidecar.tracing.facts import Direction, RequestFacts, ResponseFacts
from tracemesh_sidecar.tracing.request_id import CLIENT_TRACE_ID
from tracemesh_sidecar.tracing.request_tags import BAGGAGE, baggage_values, parse_tags_header

MALFORMED_REQUEST_TAGS = "tracing.malformed_request_tags"  # tags-header pieces and baggage members ignored

# Envoy's max_path_tag_length default; Istio passes a provider's maxTagLength only when it is not 0
# (pilot/pkg/networking/core/tracing.go buildHCMTracing). It caps the path in the http.url tag, nothing
# else (HttpTracerUtility's buildUrl, source/common/tracing/http_tracer_impl.cc).
DEFAULT_MAX_PATH_TAG_LENGTH = 256
_ABSOLUTE_FORM = ("http://", "https://")


class SpanBuilder:
    def __init__(self, node: NodeIdentity, direction: Direction, policy: TracingPolicy,
                 provider: ProviderConfig | None, environ: Mapping[str, str], proxy_type: str = "sidecar",
                 stats: Stats | None = None) -> None:
        self._outbound = direction == "outbound"
        self._kind: SpanKind = "CLIENT" if self._outbound else "SERVER"
        # One Endpoint shared by every span of this builder: spans are read-only once built, and this
        # saves an allocation per span on the request path.
        local_name = provider.local_service_name if provider is not None else None
        self._local_endpoint = _endpoint((node.pod_ip, None), local_name or node.service_name)
        # Kong's default_service_name: the remote endpoint's service name where nothing names it (tracemesh's never do).
        self._remote_name = provider.default_service_name if provider is not None else None
        self._tags_header = provider.tags_header if provider is not None else None
        self._baggage_keys = frozenset(provider.baggage_tags) if provider is not None else frozenset()
        self._stats = stats
        self._path_limit = (provider.max_tag_length if provider is not None else 0) or DEFAULT_MAX_PATH_TAG_LENGTH
        static = {"node_id": node.node_id(proxy_type), "component": "proxy"}
        if policy.enable_istio_tags:  # Istio's buildServiceTags, only with Telemetry's enableIstioTags
            static.update({
                "istio.canonical_service": node.canonical_service,
                "istio.canonical_revision": node.canonical_revision,
                "istio.namespace": node.namespace,
                "istio.mesh_id": node.mesh_id,
                "istio.cluster_id": node.cluster_id,
            })
        header_tags: list[tuple[str, str, str | None]] = []
        for tag in policy.custom_tags:
            if tag.kind == "header":
                header_tags.append((tag.name, tag.source.lower(), tag.default))
                continue
            value = _static_custom_value(tag, environ)
            if value is not None:
                static[tag.name] = value
        self._static_tags = static
        self._header_tags = tuple(header_tags)

    def build(self, trace_id: str, span_id: str, parent_id: str | None, debug: bool, request_id: str, name: str,
              request: RequestFacts, response: ResponseFacts, start_us: int, end_us: int) -> Span:
        status = response.status
        flags = response.response_flags
        headers = request.headers
        tags = {
            "http.method": request.method,
            "http.url": _url(request.target, request.authority, self._path_limit),
            "http.protocol": request.protocol,
            "http.status_code": str(status),
            "request_size": str(response.request_size),
            "response_size": str(response.response_size),
            "response_flags": flags,
            "upstream_cluster": request.cluster,
            "guid:x-request-id": request_id,
            "user_agent": headers.get("user-agent", "-"),
            "peer.address": request.peer[0],
        }
        if self._tags_header is not None or self._baggage_keys:
            tags = self._request_tags(headers) | tags  # the proxy's own tags win over the client's
        client_trace_id = headers.get(CLIENT_TRACE_ID)
        if client_trace_id is not None:
            tags["guid:x-client-trace-id"] = client_trace_id
        # Custom tags are applied last so that a custom tag may replace a standard one, as in Envoy.
        tags.update(self._static_tags)
        for tag_name, header, default in self._header_tags:
            value = headers.get(header, default)
            if value is not None:
                tags[tag_name] = value
        if status >= 500 or status == 0 or flags != "-":
            tags["error"] = "true"
        if self._outbound:
            remote = _endpoint(response.upstream, self._remote_name) if response.upstream is not None else None
        else:
            remote = _endpoint(request.peer, self._remote_name)
        return Span(
            trace_id=trace_id,
            id=span_id,
            parent_id=parent_id,
            name=name,
            kind=self._kind,
            timestamp=start_us,
            duration=max(end_us - start_us, 1),  # Zipkin v2 requires duration >= 1 µs
            local_endpoint=self._local_endpoint,
            remote_endpoint=remote,
            tags=tags,
            debug=debug,
        )


    def _request_tags(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The tags the request's tags header and baggage ask for (request_tags.py), malformed pieces counted."""
        tags: dict[str, str] = {}
        malformed = 0
        if self._tags_header is not None and (value := headers.get(self._tags_header)) is not None:
            tags, malformed = parse_tags_header(value)
        if self._baggage_keys and (value := headers.get(BAGGAGE)) is not None:
            values, bad = baggage_values(value, self._baggage_keys)
            tags.update(values)
            malformed += bad
        if malformed and self._stats is not None:
            self._stats.inc(MALFORMED_REQUEST_TAGS, malformed)
        return tags


def _url(target: str, authority: str, path_limit: int) -> str:
    """`http://{authority}{path}` with the path cut at `path_limit` characters, as Envoy's buildUrl."""
    scheme = "http"
    if target.startswith(_ABSOLUTE_FORM):  # an explicit-proxy client's absolute-form target
        scheme, _, rest = target.partition("://")
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    if len(target) > path_limit:
        target = target[:path_limit]
    return f"{scheme}://{authority}{target}"


def _static_custom_value(tag: CustomTag, environ: Mapping[str, str]) -> str | None:
    if tag.kind == "literal":
        return tag.source
    return environ.get(tag.source, tag.default)


def _endpoint(address: tuple[str, int | None], service_name: str | None = None) -> Endpoint:
    ip, port = address
    if ":" in ip:
        return Endpoint(service_name=service_name, ipv6=ip, port=port)
    return Endpoint(service_name=service_name, ipv4=ip, port=port)
