"""The span one proxy hop reports, shaped as the mesh contract's span table says.

Everything that is the same for every span of one (config, direction) is computed once in the
constructor, so that building a span is a dict copy plus the per-request tags: this runs for every
sampled request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from tracemesh_sidecar.config.model import CustomTag, NodeIdentity, ProviderConfig, TracingPolicy
from tracemesh_sidecar.spans.model import Endpoint, Span, SpanKind
from tracemesh_sidecar.stats import Stats
from tracemesh_sidecar.tracing.facts import Direction, RequestFacts, ResponseFacts
from tracemesh_sidecar.tracing.grpc import is_grpc_request, is_grpc_server_error
from tracemesh_sidecar.tracing.request_id import CLIENT_TRACE_ID
from tracemesh_sidecar.tracing.request_tags import BAGGAGE, baggage_values, parse_tags_header

MALFORMED_REQUEST_TAGS: Final = "tracing.malformed_request_tags"  # tags-header pieces and baggage members ignored

# Envoy's max_path_tag_length default; Istio passes a provider's maxTagLength only when it is not 0
# (pilot/pkg/networking/core/tracing.go buildHCMTracing). It caps the path in the http.url tag, nothing
# else (HttpTracerUtility's buildUrl, source/common/tracing/http_tracer_impl.cc).
DEFAULT_MAX_PATH_TAG_LENGTH: Final = 256

# The standard tags of every span (Envoy's HttpTracerUtility::finalizeDownstreamSpan and Istio's), in the order
# they are set.
HTTP_METHOD: Final = "http.method"
HTTP_URL: Final = "http.url"
HTTP_PROTOCOL: Final = "http.protocol"
HTTP_STATUS_CODE: Final = "http.status_code"
REQUEST_SIZE: Final = "request_size"
RESPONSE_SIZE: Final = "response_size"
RESPONSE_FLAGS: Final = "response_flags"
UPSTREAM_CLUSTER: Final = "upstream_cluster"
REQUEST_ID_TAG: Final = "guid:x-request-id"
USER_AGENT: Final = "user_agent"
PEER_ADDRESS: Final = "peer.address"
_STANDARD_TAGS: Final = (HTTP_METHOD, HTTP_URL, HTTP_PROTOCOL, HTTP_STATUS_CODE, REQUEST_SIZE, RESPONSE_SIZE,
                         RESPONSE_FLAGS, UPSTREAM_CLUSTER, REQUEST_ID_TAG, USER_AGENT, PEER_ADDRESS)
# The tags set only for some requests before the custom ones (Envoy's addGrpcRequestTags among them).
CLIENT_TRACE_ID_TAG: Final = "guid:x-client-trace-id"
GRPC_PATH: Final = "grpc.path"
GRPC_AUTHORITY: Final = "grpc.authority"
GRPC_CONTENT_TYPE_TAG: Final = "grpc.content_type"
GRPC_TIMEOUT: Final = "grpc.timeout"
# What a static custom tag of the same name replaces: a span template cannot hold such a tag.
_SET_BEFORE_STATIC: Final = frozenset((*_STANDARD_TAGS, CLIENT_TRACE_ID_TAG, GRPC_PATH, GRPC_AUTHORITY,
                                       GRPC_CONTENT_TYPE_TAG, GRPC_TIMEOUT))
_ABSOLUTE_FORM: Final = ("http://", "https://")


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
        # The tags every span starts from: the static ones, with a slot for each standard tag. Copying it and
        # setting the standard values in place costs a third of building the dict and updating it with the static
        # tags (callgrind: ~3k instructions a span). Only where no static tag has the name of one set before them
        # (a custom tag may replace a standard one, which then must not be written over it), and no tags header or
        # baggage adds tags the standard ones replace.
        self._template: dict[str, str] | None = None
        if static.keys().isdisjoint(_SET_BEFORE_STATIC) and self._tags_header is None and not self._baggage_keys:
            self._template = dict.fromkeys(_STANDARD_TAGS, "") | static

    def build(self, trace_id: str, span_id: str, parent_id: str | None, debug: bool, request_id: str, name: str,
              request: RequestFacts, response: ResponseFacts, start_us: int, end_us: int) -> Span:
        status = response.status
        flags = response.response_flags
        headers = request.headers
        scheme, path = _origin_form(request.target)
        template = self._template
        tags = template.copy() if template is not None else {}
        tags[HTTP_METHOD] = request.method  # _STANDARD_TAGS, in its order
        tags[HTTP_URL] = _url(scheme, request.authority, path, self._path_limit)
        tags[HTTP_PROTOCOL] = request.protocol
        tags[HTTP_STATUS_CODE] = str(status)
        tags[REQUEST_SIZE] = str(response.request_size)
        tags[RESPONSE_SIZE] = str(response.response_size)
        tags[RESPONSE_FLAGS] = flags
        tags[UPSTREAM_CLUSTER] = request.cluster
        tags[REQUEST_ID_TAG] = request_id
        tags[USER_AGENT] = headers.get("user-agent", "-")
        tags[PEER_ADDRESS] = request.peer[0]
        if self._tags_header is not None or self._baggage_keys:
            tags = self._request_tags(headers) | tags  # the proxy's own tags win over the client's
        client_trace_id = headers.get(CLIENT_TRACE_ID)
        if client_trace_id is not None:
            tags[CLIENT_TRACE_ID_TAG] = client_trace_id
        # Envoy's isGrpcRequestHeaders: a gRPC content-type on a request with a :path (a CONNECT has none).
        content_type = headers.get("content-type")
        if is_grpc_request(content_type) and request.method != "CONNECT":
            _add_grpc_request_tags(tags, path, request.authority, content_type, headers.get("grpc-timeout"))
        # Custom tags come after the standard ones so that they may replace them, as in Envoy (but for the
        # response's gRPC tags, which Envoy sets after them).
        if template is None:
            tags.update(self._static_tags)
        for tag_name, header, default in self._header_tags:
            value = headers.get(header, default)
            if value is not None:
                tags[tag_name] = value
        # Envoy's addGrpcResponseTags, for any response carrying a grpc-status, after the custom tags.
        grpc_status = response.grpc_status
        if grpc_status is not None:
            tags["grpc.status_code"] = grpc_status
            if response.grpc_message is not None:
                tags["grpc.message"] = response.grpc_message
        if (status >= 500 or status == 0 or flags != "-"
                or (grpc_status is not None and is_grpc_server_error(grpc_status))):
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


    def _request_tags(self, headers: dict[str, str]) -> dict[str, str]:
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


def _origin_form(target: str) -> tuple[str, str]:
    """The scheme and the path (Envoy's :path) of a request-target."""
    if target.startswith(_ABSOLUTE_FORM):  # an explicit-proxy client's absolute-form target
        scheme, _, rest = target.partition("://")
        slash = rest.find("/")
        return scheme, rest[slash:] if slash >= 0 else "/"
    return "http", target


def _url(scheme: str, authority: str, path: str, path_limit: int) -> str:
    """`http://{authority}{path}` with the path cut at `path_limit` characters, as Envoy's buildUrl."""
    if len(path) > path_limit:
        path = path[:path_limit]
    return f"{scheme}://{authority}{path}"


def _add_grpc_request_tags(tags: dict[str, str], path: str, authority: str, content_type: str,
                           grpc_timeout: str | None) -> None:
    """Envoy's addGrpcRequestTags (source/common/tracing/http_tracer_impl.cc): the headers' values as they came,
    each only when the request has it (the path uncut, the grpc-timeout unparsed)."""
    tags[GRPC_PATH] = path
    if authority:
        tags[GRPC_AUTHORITY] = authority
    tags[GRPC_CONTENT_TYPE_TAG] = content_type
    if grpc_timeout is not None:
        tags[GRPC_TIMEOUT] = grpc_timeout


def _static_custom_value(tag: CustomTag, environ: Mapping[str, str]) -> str | None:
    if tag.kind == "literal":
        return tag.source
    return environ.get(tag.source, tag.default)


def _endpoint(address: tuple[str, int | None], service_name: str | None = None) -> Endpoint:
    ip, port = address
    if ":" in ip:
        return Endpoint(service_name=service_name, ipv6=ip, port=port)
    return Endpoint(service_name=service_name, ipv4=ip, port=port)
