"""The span one proxy hop reports, shaped as the mesh contract's span table says.

Everything that is the same for every span of one (config, direction) is computed once in the
constructor, so that building a span is a dict copy plus the per-request tags: this runs for every
sampled request.
"""

from __future__ import annotations

from collections.abc import Mapping

from tracemesh_sidecar.config.model import CustomTag, NodeIdentity, ProviderConfig, TracingPolicy
from tracemesh_sidecar.spans.model import Endpoint, Span, SpanKind
from tracemesh_sidecar.tracing.facts import Direction, RequestFacts, ResponseFacts

# Istio's maxTagLength default; a configured 0 means "no limit" rather than "empty tags".
DEFAULT_MAX_TAG_LENGTH = 256
_UNLIMITED = 1 << 62
_ABSOLUTE_FORM = ("http://", "https://")


class SpanBuilder:
    def __init__(self, node: NodeIdentity, direction: Direction, policy: TracingPolicy,
                 provider: ProviderConfig | None, environ: Mapping[str, str]) -> None:
        self._outbound = direction == "outbound"
        self._kind: SpanKind = "CLIENT" if self._outbound else "SERVER"
        # One Endpoint shared by every span of this builder: spans are read-only once built, and this
        # saves an allocation per span on the request path.
        self._local_endpoint = _endpoint((node.pod_ip, None), node.service_name)
        max_length = provider.max_tag_length if provider is not None else DEFAULT_MAX_TAG_LENGTH
        self._limit = max_length or _UNLIMITED
        static = {
            "node_id": node.node_id,
            "component": "proxy",
            "istio.canonical_service": node.canonical_service,
            "istio.canonical_revision": node.canonical_revision,
            "istio.namespace": node.namespace,
            "istio.mesh_id": node.mesh_id,
        }
        header_tags: list[tuple[str, str, str | None]] = []
        for tag in policy.custom_tags:
            if tag.kind == "header":
                header_tags.append((tag.name, tag.source.lower(), tag.default))
                continue
            value = _static_custom_value(tag, environ)
            if value is not None:
                static[tag.name] = value
        self._static_tags = {name: value[: self._limit] for name, value in static.items()}
        self._header_tags = tuple(header_tags)

    def build(self, trace_id: str, span_id: str, parent_id: str | None, debug: bool, request_id: str,
              request: RequestFacts, response: ResponseFacts, start_us: int, end_us: int) -> Span:
        limit = self._limit
        target = request.target
        url = target if target.startswith(_ABSOLUTE_FORM) else f"http://{request.authority}{target}"
        port = request.destination_port
        cluster = f"outbound|{port}||{request.destination_host}" if self._outbound else f"inbound|{port}||"
        status = response.status
        flags = response.response_flags
        headers = request.headers
        peer_ip = request.peer[0]
        tags = {
            "http.method": request.method[:limit],
            "http.url": url[:limit],
            "http.protocol": request.protocol[:limit],
            "http.status_code": str(status),
            "request_size": str(response.request_size),
            "response_size": str(response.response_size),
            "response_flags": flags[:limit],
            "upstream_cluster": cluster[:limit],
            "guid:x-request-id": request_id[:limit],
            "user_agent": headers.get("user-agent", "-")[:limit],
            "peer.address": peer_ip,
        }
        # Custom tags are applied last so that a custom tag may replace a standard one, as in Envoy.
        tags.update(self._static_tags)
        for name, header, default in self._header_tags:
            value = headers.get(header, default)
            if value is not None:
                tags[name] = value[:limit]
        if status >= 500 or status == 0 or flags != "-":
            tags["error"] = "true"
        if self._outbound:
            remote = _endpoint(response.upstream) if response.upstream is not None else None
        else:
            remote = _endpoint(request.peer)
        return Span(
            trace_id=trace_id,
            id=span_id,
            parent_id=parent_id,
            name=f"{request.destination_host}:{port}/*",
            kind=self._kind,
            timestamp=start_us,
            duration=max(end_us - start_us, 1),  # Zipkin v2 requires duration >= 1 µs
            local_endpoint=self._local_endpoint,
            remote_endpoint=remote,
            tags=tags,
            debug=debug,
        )


def _static_custom_value(tag: CustomTag, environ: Mapping[str, str]) -> str | None:
    if tag.kind == "literal":
        return tag.source
    return environ.get(tag.source, tag.default)


def _endpoint(address: tuple[str, int | None], service_name: str | None = None) -> Endpoint:
    ip, port = address
    if ":" in ip:
        return Endpoint(service_name=service_name, ipv6=ip, port=port)
    return Endpoint(service_name=service_name, ipv4=ip, port=port)
