"""The proxy config document: everything one sidecar needs, in one declarative document.

The operator compiles it for each workload and pushes it; local mode writes it to a file.
The same document is what `GET 127.0.0.1:15000/config_dump` shows. Field names on the wire
are camelCase, like every Kubernetes and Istio document; Python attributes are snake_case.
A port's `protocol` (inbound ports, outbound services) is the Service port's, by Istio's names (config/protocol.py:
HTTP, HTTP2, GRPC, GRPC-Web, TCP, ...); unset when the Service declares none, and the proxy then sniffs it.

Example (YAML):

    version: "7"
    node: {podName: productpage-v1-x, namespace: default, podIP: 10.244.0.5,
           canonicalService: productpage, canonicalRevision: v1}
    listeners: {outbound: "127.0.0.1:15001", inbound: "0.0.0.0:15006"}
    inbound: {ports: [{port: 9080, protocol: HTTP}]}
    outbound:
      services: [{host: reviews.default.svc.cluster.local, port: 9080, protocol: GRPC,
                  endpoints: ["10.244.0.7:9080"], addresses: [10.96.0.12]}]
    tracing:
      client: {provider: zipkin, samplingPercentage: 100}
      server: {provider: zipkin, samplingPercentage: 100}
    providers:
      - {name: zipkin, zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}}
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from tracemesh_sidecar.config.fields import ConfigError, Fields, format_duration
from tracemesh_sidecar.config.fields import check_host_port as check_host_port  # its home before fields.py
from tracemesh_sidecar.config.observability import (
    ISTIO_DEFAULT_METRICS,
    NO_ACCESS_LOGS,
    AccessLogConfig,
    MetricsConfig,
    dump_access_logs,
    dump_metrics,
    parse_access_logs,
    parse_metrics,
)
from tracemesh_sidecar.config.protocol import PROTOCOLS
from tracemesh_sidecar.config.routes import (
    GatewayConfig,
    RouteTable,
    ServiceSubset,
    dump_gateway,
    dump_route_tables,
    dump_subsets,
    parse_endpoints,
    parse_gateway,
    parse_route_tables,
    parse_subsets,
)

ProviderKind = Literal["zipkin", "opentelemetry", "jaeger"]
# "router": a gateway (no app, no capture), Istio's `pilot-agent proxy router`.
ProxyType = Literal["sidecar", "router"]
PROXY_TYPES: Final[tuple[ProxyType, ...]] = ("sidecar", "router")
PROVIDER_KINDS: Final[tuple[ProviderKind, ...]] = ("zipkin", "opentelemetry", "jaeger")
# How spans travel to a provider: Istio's `opentelemetry` exports OTLP over gRPC unless it has an `http` block.
Transport = Literal["http", "grpc"]
TRANSPORTS: Final[tuple[Transport, ...]] = ("http", "grpc")
# OpenTelemetry resource detectors the proxy applies (Istio's `resourceDetectors`): `environment` reads
# OTEL_RESOURCE_ATTRIBUTES from the proxy's environment, as Envoy's environment detector does.
RESOURCE_DETECTORS: Final = ("environment",)
TRACE_CONTEXT_OPTIONS: Final = ("USE_B3", "USE_B3_WITH_W3C_PROPAGATION")
CustomTagKind = Literal["literal", "environment", "header"]
CUSTOM_TAG_KINDS: Final[tuple[CustomTagKind, ...]] = ("literal", "environment", "header")
# Formats the proxy can read besides the ones it always reads (B3 multi, B3 single, W3C).
EXTRA_EXTRACT_FORMATS: Final = ("jaeger", "ot")
# tracemesh's extensions of a provider, after Kong's Zipkin plugin (README "Coming from Kong"): how the proxy
# reads and writes trace headers (`headerType`; unset: Istio's behaviour, each tracer its own formats), the
# format written when none came in (`defaultHeaderType`), and the formats it can write.
HEADER_FORMATS: Final = ("b3", "b3-single", "w3c", "jaeger", "ot")
HEADER_TYPES: Final = ("preserve", "ignore", *HEADER_FORMATS)
_HEADER_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
DEFAULT_TAGS_HEADER: Final = "zipkin-tags"  # Kong's tags_header default (`Zipkin-Tags`), lowercase as headers are read

# Envoy's `listener_filters_timeout` default: how long a captured connection may stay silent before the
# proxy stops waiting to sniff HTTP and relays it as opaque TCP (server-speaks-first protocols: MySQL,
# SMTP, SSH). Istio's MeshConfig calls it `protocolDetectionTimeout`; 0 waits for the client forever.
DEFAULT_PROTOCOL_DETECTION_TIMEOUT_S: Final = 15.0
DEFAULT_ZIPKIN_PATH: Final = "/api/v2/spans"
DEFAULT_OTLP_PATH: Final = "/v1/traces"


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """Who this proxy speaks for: the pod and its canonical service."""

    pod_name: str
    namespace: str
    pod_ip: str
    canonical_service: str
    canonical_revision: str = "latest"
    service_account: str = "default"
    mesh_id: str = "cluster.local"
    cluster_domain: str = "cluster.local"
    labels: Mapping[str, str] = field(default_factory=dict)
    cluster_id: str = "Kubernetes"  # Istio's cluster name (istiod's CLUSTER_ID default): the istio.cluster_id tag
    # The FQDN that names SERVER spans on an inbound port no Service targets; defaults to the canonical service's.
    service_host: str | None = None
    # Envoy's service cluster, the `localEndpoint.serviceName` of every span, as Istio's bootstrap picks it
    # (the operator computes it from the pod's labels); None: `{canonical service}.{namespace}`.
    tracing_service_name: str | None = None

    @property
    def service_name(self) -> str:
        """`localEndpoint.serviceName` of every span."""
        return self.tracing_service_name or f"{self.canonical_service}.{self.namespace}"

    @property
    def own_host(self) -> str:
        return self.service_host or f"{self.canonical_service}.{self.namespace}.svc.{self.cluster_domain}"

    def node_id(self, proxy_type: str = "sidecar") -> str:
        """Envoy's node id (`sidecar~...`, a gateway's `router~...`: Istio's model.Proxy ID), the `node_id` tag."""
        return f"{proxy_type}~{self.pod_ip}~{self.pod_name}.{self.namespace}~{self.namespace}.svc.{self.cluster_domain}"


@dataclass(frozen=True, slots=True)
class Listeners:
    """Where the proxy listens, each `host:port`, or None for a listener that is off."""

    outbound: str | None = "127.0.0.1:15001"
    inbound: str | None = "0.0.0.0:15006"
    admin: str | None = "127.0.0.1:15000"
    health: str | None = "0.0.0.0:15021"
    prometheus: str | None = "0.0.0.0:15090"


@dataclass(frozen=True, slots=True)
class InboundPort:
    """One application port fronted by the proxy, and the Service that targets it.

    Istio builds one inbound chain per target port, named after the oldest Service targeting it
    (pilot/pkg/networking/core/listener_inbound.go): its route decorator, the SERVER span's name, is
    `{service_host}:{service_port}/*`, and its cluster `inbound|{port}||`.
    """

    port: int  # the workload port callers' packets aim at (a Service's targetPort): `inbound|port||`
    app_port: int  # where the application listens, on `InboundConfig.app_address`
    listen: str | None = None  # an extra explicit listener (`host:port`) for local mode
    service_host: str | None = None  # the Service's FQDN; None: no Service targets the port (NodeIdentity.own_host)
    service_port: int | None = None  # that Service's port mapping to `port`; None: `port`
    # That Service port's protocol (config/protocol.py, Istio's protocol.Instance); "": none declared (sniffed).
    protocol: str = ""

    def operation(self, own_host: str) -> str:
        """The SERVER span's name when the caller sends no `x-envoy-decorator-operation`."""
        return f"{self.service_host or own_host}:{self.service_port or self.port}/*"


@dataclass(frozen=True, slots=True)
class InboundConfig:
    app_address: str = "127.0.0.1"
    ports: tuple[InboundPort, ...] = ()
    connect_timeout_s: float = 10.0
    request_timeout_s: float | None = None  # None: no limit, like Istio's default route
    protocol_detection_timeout_s: float = DEFAULT_PROTOCOL_DETECTION_TIMEOUT_S  # 0: no limit


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """A service the outbound side balances per request: by name (explicit proxy, the local-mode
    registry) or by its virtual address (transparent capture of traffic to a ClusterIP)."""

    host: str  # FQDN, e.g. reviews.default.svc.cluster.local
    port: int
    endpoints: tuple[str, ...]  # `ip:port`, round-robin
    addresses: tuple[str, ...] = ()  # the Service's ClusterIPs (VIPs) that `port` is reached on
    subsets: tuple[ServiceSubset, ...] = ()  # DestinationRule subsets, for routes that name one
    # The Service port's protocol (config/protocol.py, Istio's protocol.Instance); "": none declared (sniffed).
    protocol: str = ""

    def subset(self, name: str | None) -> ServiceSubset | None:
        return next((subset for subset in self.subsets if subset.name == name), None)


@dataclass(frozen=True, slots=True)
class OutboundConfig:
    services: tuple[ServiceEntry, ...] = ()
    connect_timeout_s: float = 10.0
    request_timeout_s: float | None = None
    protocol_detection_timeout_s: float = DEFAULT_PROTOCOL_DETECTION_TIMEOUT_S  # 0: no limit


@dataclass(frozen=True, slots=True)
class CustomTag:
    name: str
    kind: CustomTagKind
    source: str  # the literal value, environment variable name or request header name
    default: str | None = None


@dataclass(frozen=True, slots=True)
class TracingPolicy:
    """Tracing for one direction of the workload's traffic (client = outbound, server = inbound)."""

    enabled: bool = True  # False: no spans, no new trace context; x-request-id still handled
    provider: str | None = None  # a name in ProxyConfig.providers; None reports nowhere
    sampling_percentage: float = 1.0  # Istio's default
    disable_span_reporting: bool = False
    disable_context_propagation: bool = False
    custom_tags: tuple[CustomTag, ...] = ()
    # Istio's Telemetry `enableIstioTags` (the istio.* span tags) and `useRequestIdForTraceSampling`
    # (Envoy's use_request_id_for_trace_sampling: the sampling decision follows x-request-id), both default on.
    enable_istio_tags: bool = True
    use_request_id_for_trace_sampling: bool = True


@dataclass(frozen=True, slots=True)
class TracingConfig:
    client: TracingPolicy = TracingPolicy()
    server: TracingPolicy = TracingPolicy()
    extra_extract: tuple[str, ...] = ()  # from EXTRA_EXTRACT_FORMATS


@dataclass(frozen=True, slots=True)
class BatchConfig:
    max_spans: int = 512  # spans per export request (the OpenTelemetry SDK's maxExportBatchSize)
    flush_interval_s: float = 0.5
    # Spans held waiting; past it the oldest are dropped and counted. The OpenTelemetry SDK's BatchSpanProcessor
    # default (OTEL_BSP_MAX_QUEUE_SIZE): four batches, ~3.5 MB of spans; 8192 held ~14 MB while a slow collector
    # filled it, taking a sidecar past 60 MB.
    queue_size: int = 2048
    max_retries: int = 3


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One MeshConfig `extensionProviders[]` entry, resolved to what the exporter needs."""

    name: str
    kind: ProviderKind
    service: str
    port: int
    path: str
    max_tag_length: int = 256
    enable_64bit_trace_id: bool = False
    trace_context_option: str = "USE_B3"
    connect_timeout_s: float = 2.0
    timeout_s: float = 5.0
    headers: tuple[tuple[str, str], ...] = ()  # HTTP request headers, or gRPC initial metadata
    batch: BatchConfig = BatchConfig()
    transport: Transport = "http"  # "grpc": OTLP over gRPC (`path` is then unused)
    resource_detectors: tuple[str, ...] = ()  # from RESOURCE_DETECTORS
    # Per-phase export timeouts beside the total (Kong's connect/send/read_timeout); None: the total bounds it.
    send_timeout_s: float | None = None
    read_timeout_s: float | None = None
    # tracemesh extensions after Kong's Zipkin plugin; every default keeps Istio's behaviour.
    header_type: str | None = None  # from HEADER_TYPES; None: Istio's (the tracer's own formats)
    default_header_type: str = "b3"  # from HEADER_FORMATS: written under `preserve` when no format came in
    extra_extract: tuple[str, ...] = ()  # from EXTRA_EXTRACT_FORMATS, read besides the tracer's own
    tags_header: str | None = None  # lowercase request header whose `name=value; ...` become span tags
    response_header_for_trace_id: str | None = None  # response header carrying the trace id (inbound hops)
    local_service_name: str | None = None  # every span's localEndpoint.serviceName instead of the node's
    default_service_name: str | None = None  # remoteEndpoint.serviceName of every span with a remote endpoint
    baggage_tags: tuple[str, ...] = ()  # W3C `baggage` keys copied to span tags

    @property
    def url(self) -> str:
        if self.transport == "grpc":
            return f"grpc://{self.service}:{self.port}"
        return f"http://{self.service}:{self.port}{self.path}"

    @property
    def propagates_w3c(self) -> bool:
        return self.kind != "zipkin" or self.trace_context_option == "USE_B3_WITH_W3C_PROPAGATION"

    @property
    def propagates_b3(self) -> bool:
        return self.kind == "zipkin"


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    """Where the proxy subscribes for config pushes (the operator's port 15010)."""

    address: str  # `host:port`
    resubscribe_max_backoff_s: float = 30.0


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    node: NodeIdentity
    version: str = "0"
    listeners: Listeners = Listeners()
    inbound: InboundConfig = InboundConfig()
    outbound: OutboundConfig = OutboundConfig()
    tracing: TracingConfig = TracingConfig()
    providers: tuple[ProviderConfig, ...] = ()
    discovery: DiscoveryConfig | None = None
    proxy_type: ProxyType = "sidecar"
    gateway: GatewayConfig | None = None  # router only: the listeners it serves
    route_tables: tuple[RouteTable, ...] = ()
    metrics: MetricsConfig = ISTIO_DEFAULT_METRICS  # Istio's standard metrics (config/observability.py)
    access_logs: AccessLogConfig = NO_ACCESS_LOGS  # none by default, as Istio's

    def route_table(self, name: str) -> RouteTable | None:
        return next((table for table in self.route_tables if table.name == name), None)

    def provider(self, name: str | None) -> ProviderConfig | None:
        for provider in self.providers:
            if provider.name == name:
                return provider
        return None

    def with_version(self, version: str) -> ProxyConfig:
        return replace(self, version=version)


# ---------------------------------------------------------------------------------------------
# Reading (document -> model). Every error names the field and the fix.


def parse_proxy_config(document: object) -> ProxyConfig:
    root = Fields(document, "")
    proxy_type = root.choice("proxyType", PROXY_TYPES, "sidecar")
    route_tables = parse_route_tables(root)
    if proxy_type == "router" and not root.has("gateway"):
        raise ConfigError("gateway", "is required for proxyType router", "list the gateway's listeners")
    if proxy_type == "sidecar" and root.has("gateway"):
        raise ConfigError("gateway", "is set for a sidecar", "remove it, or set proxyType: router")
    config = ProxyConfig(
        proxy_type=proxy_type,
        route_tables=route_tables,
        gateway=parse_gateway(root.mapping("gateway"), route_tables) if root.has("gateway") else None,
        version=str(root.raw("version", "0")),
        node=_parse_node(root.mapping("node")),
        listeners=_parse_listeners(root.mapping("listeners")),
        inbound=_parse_inbound(root.mapping("inbound")),
        outbound=_parse_outbound(root.mapping("outbound")),
        tracing=_parse_tracing(root.mapping("tracing")),
        providers=tuple(parse_provider(Fields(item, path)) for path, item in root.items("providers")),
        discovery=_parse_discovery(root.mapping("discovery")) if root.has("discovery") else None,
        metrics=parse_metrics(root.mapping("metrics")),
        access_logs=parse_access_logs(root.mapping("accessLogs")),
    )
    root.raw("apiVersion")
    root.raw("kind")
    root.done()
    _check_references(config)
    return config


def _check_references(config: ProxyConfig) -> None:
    names = [provider.name for provider in config.providers]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError("providers", f"name {name!r} is used twice", "give every provider its own name")
    for direction in ("client", "server"):
        policy: TracingPolicy = getattr(config.tracing, direction)
        if policy.provider is not None and policy.provider not in names:
            raise ConfigError(
                f"tracing.{direction}.provider",
                f"names {policy.provider!r}, which is not in providers",
                f"use one of: {', '.join(names) or 'none defined; add a provider'}",
            )


def _parse_node(node: Fields) -> NodeIdentity:
    result = NodeIdentity(
        pod_name=node.string("podName"),
        namespace=node.string("namespace"),
        pod_ip=node.string("podIP", "127.0.0.1"),
        canonical_service=node.string("canonicalService"),
        canonical_revision=node.string("canonicalRevision", "latest"),
        service_account=node.string("serviceAccount", "default"),
        mesh_id=node.string("meshId", "cluster.local"),
        cluster_domain=node.string("clusterDomain", "cluster.local"),
        labels=node.string_map("labels"),
        cluster_id=node.string("clusterID", "Kubernetes"),
        service_host=node.string("serviceHost", None),
        tracing_service_name=node.string("tracingServiceName", None),
    )
    node.done()
    return result


def _listen_address(fields: Fields, key: str, default: str | None) -> str | None:
    value = fields.raw(key, default)
    # YAML 1.1 reads a bare `off` as false: both mean "this listener is off".
    if value is None or value is False or value in ("", "off"):
        return None
    check_host_port(str(value), f"{fields.path}.{key}" if fields.path else key)
    return str(value)


def _parse_listeners(fields: Fields) -> Listeners:
    defaults = Listeners()
    result = Listeners(
        outbound=_listen_address(fields, "outbound", defaults.outbound),
        inbound=_listen_address(fields, "inbound", defaults.inbound),
        admin=_listen_address(fields, "admin", defaults.admin),
        health=_listen_address(fields, "health", defaults.health),
        prometheus=_listen_address(fields, "prometheus", defaults.prometheus),
    )
    fields.done()
    if result.admin is not None:
        _check_loopback(result.admin, f"{fields.path}.admin" if fields.path else "admin")
    return result


def _check_loopback(address: str, path: str) -> None:
    """The admin port shows every config and counter and can change nothing safely: loopback only, as Envoy's."""
    host, _ = check_host_port(address, path)
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(path, f"is {address!r}, which is reachable from outside the pod",
                          "bind the admin listener to loopback, e.g. 127.0.0.1:15000")


def _parse_inbound(fields: Fields) -> InboundConfig:
    ports = []
    for path, item in fields.items("ports"):
        entry = Fields(item, path)
        port = entry.port("port")
        service_host = entry.string("serviceHost", None)
        service_port = entry.port("servicePort", None)
        if service_port is not None and service_host is None:
            raise ConfigError(f"{entry.path}.servicePort", "is set without serviceHost",
                              "add serviceHost (the Service's FQDN) or remove servicePort")
        ports.append(InboundPort(port=port, app_port=entry.port("appPort", port),
                                 listen=_listen_address(entry, "listen", None),
                                 service_host=service_host, service_port=service_port,
                                 protocol=_protocol(entry)))
        entry.done()
    result = InboundConfig(
        app_address=fields.string("appAddress", "127.0.0.1"),
        ports=tuple(ports),
        connect_timeout_s=fields.duration("connectTimeout", 10.0),
        request_timeout_s=fields.duration("requestTimeout", None),
        protocol_detection_timeout_s=fields.duration("protocolDetectionTimeout", DEFAULT_PROTOCOL_DETECTION_TIMEOUT_S),
    )
    fields.done()
    return result


def _parse_outbound(fields: Fields) -> OutboundConfig:
    services = []
    for path, item in fields.items("services"):
        entry = Fields(item, path)
        endpoints = parse_endpoints(entry)
        addresses = []
        for address_path, address in entry.items("addresses"):
            addresses.append(_ip_address(address, address_path))
        services.append(ServiceEntry(host=entry.string("host"), port=entry.port("port"), endpoints=endpoints,
                                     addresses=tuple(addresses), subsets=parse_subsets(entry),
                                     protocol=_protocol(entry)))
        entry.done()
    result = OutboundConfig(
        services=tuple(services),
        connect_timeout_s=fields.duration("connectTimeout", 10.0),
        request_timeout_s=fields.duration("requestTimeout", None),
        protocol_detection_timeout_s=fields.duration("protocolDetectionTimeout", DEFAULT_PROTOCOL_DETECTION_TIMEOUT_S),
    )
    fields.done()
    return result


def _protocol(entry: Fields) -> str:
    """A port's `protocol`: one of Istio's protocol names, exactly as Istio writes it; unset: sniffed."""
    protocol: str = entry.choice("protocol", PROTOCOLS, "")
    return protocol


def _ip_address(value: object, path: str) -> str:
    """An IPv4 or IPv6 address in its canonical text, so it compares equal to what SO_ORIGINAL_DST gives."""
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ConfigError(path, f"is {value!r}", "write an IP address, e.g. 10.96.0.10 (a Service's ClusterIP)") \
            from None


def _parse_policy(fields: Fields) -> TracingPolicy:
    tags = []
    # A map in the document: sorted by name so that equal documents give equal configs.
    for name in sorted(fields.mapping("customTags").keys()):
        tags.append(parse_custom_tag(name, fields.mapping("customTags").mapping(name)))
    fields.raw("customTags")
    result = TracingPolicy(
        enabled=fields.boolean("enabled", True),
        provider=fields.string("provider", None),
        sampling_percentage=fields.number("samplingPercentage", 1.0, minimum=0.0, maximum=100.0),
        disable_span_reporting=fields.boolean("disableSpanReporting", False),
        disable_context_propagation=fields.boolean("disableContextPropagation", False),
        custom_tags=tuple(tags),
        enable_istio_tags=fields.boolean("enableIstioTags", True),
        use_request_id_for_trace_sampling=fields.boolean("useRequestIdForTraceSampling", True),
    )
    fields.done()
    return result


def parse_custom_tag(name: str, fields: Fields) -> CustomTag:
    """One Istio `customTags` entry: exactly one of literal, environment, header."""
    kinds = [kind for kind in CUSTOM_TAG_KINDS if fields.has(kind)]
    if len(kinds) != 1:
        raise ConfigError(fields.path, f"sets {len(kinds)} of literal, environment, header",
                          "set exactly one of them")
    kind = kinds[0]
    body = fields.mapping(kind)
    fields.done()
    if kind == "literal":
        tag = CustomTag(name=name, kind=kind, source=body.string("value", allow_empty=True))
    else:
        tag = CustomTag(name=name, kind=kind, source=body.string("name"),
                        default=body.string("defaultValue", None, allow_empty=True))
    body.done()
    return tag


def _parse_tracing(fields: Fields) -> TracingConfig:
    extra = []
    for path, item in fields.items("extraExtract"):
        if item not in EXTRA_EXTRACT_FORMATS:
            raise ConfigError(path, f"is {item!r}", f"use one of {', '.join(EXTRA_EXTRACT_FORMATS)}")
        extra.append(str(item))
    result = TracingConfig(
        client=_parse_policy(fields.mapping("client")),
        server=_parse_policy(fields.mapping("server")),
        extra_extract=tuple(extra),
    )
    fields.done()
    return result


def parse_provider(fields: Fields) -> ProviderConfig:
    """An Istio `extensionProviders[]` entry: `{name, zipkin|opentelemetry|jaeger: {...}}`."""
    name = fields.string("name")
    kinds = [kind for kind in PROVIDER_KINDS if fields.has(kind)]
    if len(kinds) != 1:
        raise ConfigError(fields.path, f"provider {name!r} sets {len(kinds)} of {', '.join(PROVIDER_KINDS)}",
                          "set exactly one provider kind")
    kind = kinds[0]
    body = fields.mapping(kind)
    batch = body.mapping("batch")
    defaults = BatchConfig()
    batch_config = BatchConfig(
        max_spans=batch.integer("maxSpans", defaults.max_spans, minimum=1),
        flush_interval_s=batch.duration("flushInterval", defaults.flush_interval_s),
        queue_size=batch.integer("queueSize", defaults.queue_size, minimum=1),
        max_retries=batch.integer("maxRetries", defaults.max_retries, minimum=0),
    )
    batch.done()
    transport: Transport = "http"
    if kind == "opentelemetry":
        # Istio's OpenTelemetryTracingProvider: OTLP/HTTP with an `http` block, otherwise OTLP/gRPC.
        if body.has("http") and body.has("grpc"):
            raise ConfigError(f"{body.path}.grpc", "is set together with http",
                              "keep http (OTLP/HTTP) or grpc (OTLP/gRPC), not both")
        transport = "http" if body.has("http") else "grpc"
        transport_fields = body.mapping(transport)
    else:
        transport_fields = body
    # An empty or unset path: Zipkin's is /api/v2/spans (tracing.go zipkinConfig); Istio's OpenTelemetry HttpService
    # has none (it posts to "/", as Envoy reads a URI without a path); tracemesh's `jaeger` posts to /v1/traces.
    default_path = {"zipkin": DEFAULT_ZIPKIN_PATH, "opentelemetry": "", "jaeger": DEFAULT_OTLP_PATH}[kind]
    path_text = transport_fields.string("path", "", allow_empty=True) or default_path
    path = "" if transport == "grpc" else join_path(path_text)
    headers_key = "initialMetadata" if transport == "grpc" else "headers"
    provider = ProviderConfig(
        name=name,
        kind=kind,
        service=body.string("service"),
        port=body.port("port"),
        path=path,
        max_tag_length=body.integer("maxTagLength", 256, minimum=0),
        enable_64bit_trace_id=body.boolean("enable64bitTraceId", False),
        trace_context_option=body.choice("traceContextOption", TRACE_CONTEXT_OPTIONS, "USE_B3"),
        connect_timeout_s=body.duration("connectTimeout", 2.0),
        timeout_s=transport_fields.duration("timeout", _default_timeout_s(kind, transport)),
        headers=tuple(sorted(_parse_headers(transport_fields, headers_key).items())),
        batch=batch_config,
        transport=transport,
        resource_detectors=_parse_resource_detectors(body),
        send_timeout_s=body.duration("sendTimeout", None),
        read_timeout_s=body.duration("readTimeout", None),
        **_parse_extensions(body),
    )
    if transport_fields is not body:
        transport_fields.done()
    body.done()
    fields.done()
    return provider


def _parse_extensions(body: Fields) -> dict[str, Any]:
    """tracemesh's propagation and reporting extensions of a provider (README "Coming from Kong")."""
    extra = []
    for path, item in body.items("extraExtract"):
        if item not in EXTRA_EXTRACT_FORMATS:
            raise ConfigError(path, f"is {item!r}", f"use one of {', '.join(EXTRA_EXTRACT_FORMATS)}")
        extra.append(str(item))
    tags_header = body.raw("tagsHeader", False)
    if tags_header is True:
        tags_header = DEFAULT_TAGS_HEADER
    elif tags_header is False:
        tags_header = None
    else:
        tags_header = _header_name(body, "tagsHeader")
    response_header = _header_name(body, "responseHeaderForTraceId") if body.has("responseHeaderForTraceId") else None
    baggage = []
    for path, item in body.items("baggageTags"):
        if not isinstance(item, str) or not item:
            raise ConfigError(path, f"is {item!r}", "write a baggage key, e.g. tenant")
        baggage.append(item)
    return {
        "header_type": body.choice("headerType", HEADER_TYPES, None),
        "default_header_type": body.choice("defaultHeaderType", HEADER_FORMATS, "b3"),
        "extra_extract": tuple(extra),
        "tags_header": tags_header,
        "response_header_for_trace_id": response_header,
        "local_service_name": body.string("localServiceName", None),
        "default_service_name": body.string("defaultServiceName", None),
        "baggage_tags": tuple(baggage),
    }


def _header_name(body: Fields, key: str) -> str:
    """An HTTP header name (RFC 9110 token), lowercase as the proxy reads and writes them."""
    name: str = body.string(key)
    if _HEADER_TOKEN.fullmatch(name) is None:
        raise ConfigError(f"{body.path}.{key}", f"is {name!r}, which is not an HTTP header name",
                          "use letters, digits and -, e.g. X-Trace-Id")
    return name.lower()


def _dump_extensions(provider: ProviderConfig) -> dict[str, Any]:
    """The extensions `_parse_extensions` reads, only those set (so Istio's providers dump as Istio's)."""
    return _drop_none({
        "sendTimeout": _duration(provider.send_timeout_s),
        "readTimeout": _duration(provider.read_timeout_s),
        "headerType": provider.header_type,
        "defaultHeaderType": provider.default_header_type if provider.default_header_type != "b3" else None,
        "extraExtract": list(provider.extra_extract) or None,
        "tagsHeader": provider.tags_header,
        "responseHeaderForTraceId": provider.response_header_for_trace_id,
        "localServiceName": provider.local_service_name,
        "defaultServiceName": provider.default_service_name,
        "baggageTags": list(provider.baggage_tags) or None,
    })


def _default_timeout_s(kind: ProviderKind, transport: Transport) -> float:
    """Istio's HttpService timeout defaults to 3s (config.proto); Zipkin's to Envoy's 5s (tracing.go zipkinConfig).

    Envoy sets no deadline on an OTLP/gRPC export without `grpc.timeout`; 5s keeps a silent collector from
    holding the export queue.
    """
    return 3.0 if kind == "opentelemetry" and transport == "http" else 5.0


def join_path(path: str) -> str:
    """The request path as Istio joins `service` and `path` (Go's url.JoinPath): `v1/traces` -> `/v1/traces`.

    Like Go's path.Join it drops empty, `.` and `..` segments and keeps one trailing slash; an empty path
    is `/`, as Envoy reads a URI without a path.
    """
    joined = posixpath.normpath("/" + path.lstrip("/"))
    return joined + "/" if path.endswith("/") and joined != "/" else joined


def _parse_resource_detectors(body: Fields) -> tuple[str, ...]:
    detectors = body.mapping("resourceDetectors")
    found = tuple(name for name in RESOURCE_DETECTORS if detectors.has(name))
    for name in found:
        detectors.mapping(name).done()
    detectors.done()
    return found


def _parse_headers(fields: Fields, key: str = "headers") -> dict[str, str]:
    """Istio's `headers: [{name, value}]` list (gRPC: `initialMetadata`); a plain mapping is accepted too."""
    value = fields.raw(key)
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return fields.string_map(key)
    result = {}
    for path, item in fields.items(key):
        entry = Fields(item, path)
        if entry.has("envName"):
            raise ConfigError(f"{path}.envName", "is read by the operator (as istiod reads it), not by the proxy",
                              "give the proxy config the header's value; put envName in the MeshConfig")
        result[entry.string("name")] = entry.string("value", allow_empty=True)
        entry.done()
    return result


def _parse_discovery(fields: Fields) -> DiscoveryConfig:
    address = fields.string("address")
    check_host_port(address, f"{fields.path}.address")
    result = DiscoveryConfig(address=address,
                             resubscribe_max_backoff_s=fields.duration("resubscribeMaxBackoff", 30.0))
    fields.done()
    return result


# ---------------------------------------------------------------------------------------------
# Writing (model -> document): what config_dump shows and what the operator pushes.


def dump_proxy_config(config: ProxyConfig) -> dict[str, Any]:
    node = config.node
    document: dict[str, Any] = {
        "apiVersion": "tracemesh.io/v1alpha1",
        "kind": "ProxyConfig",
        "version": config.version,
        "node": _drop_none({
            "podName": node.pod_name, "namespace": node.namespace, "podIP": node.pod_ip,
            "canonicalService": node.canonical_service, "canonicalRevision": node.canonical_revision,
            "serviceAccount": node.service_account, "meshId": node.mesh_id,
            "clusterDomain": node.cluster_domain, "labels": dict(node.labels), "clusterID": node.cluster_id,
            "serviceHost": node.service_host,
            "tracingServiceName": node.tracing_service_name,
        }),
        "listeners": {key: getattr(config.listeners, key) or "off"
                      for key in ("outbound", "inbound", "admin", "health", "prometheus")},
        "inbound": _drop_none({
            "appAddress": config.inbound.app_address,
            "ports": [_drop_none({"port": p.port, "appPort": p.app_port, "listen": p.listen,
                                  "serviceHost": p.service_host, "servicePort": p.service_port,
                                  "protocol": p.protocol or None})
                      for p in config.inbound.ports],
            "connectTimeout": _duration(config.inbound.connect_timeout_s),
            "requestTimeout": _duration(config.inbound.request_timeout_s),
            "protocolDetectionTimeout": _duration(config.inbound.protocol_detection_timeout_s),
        }),
        "outbound": _drop_none({
            "services": dump_services(config.outbound.services),
            "connectTimeout": _duration(config.outbound.connect_timeout_s),
            "requestTimeout": _duration(config.outbound.request_timeout_s),
            "protocolDetectionTimeout": _duration(config.outbound.protocol_detection_timeout_s),
        }),
        "tracing": {
            "client": _dump_policy(config.tracing.client),
            "server": _dump_policy(config.tracing.server),
            "extraExtract": list(config.tracing.extra_extract),
        },
        "providers": [dump_provider(provider) for provider in config.providers],
        "metrics": dump_metrics(config.metrics),
        "accessLogs": dump_access_logs(config.access_logs),
    }
    if config.proxy_type != "sidecar":
        document["proxyType"] = config.proxy_type
    if config.gateway is not None:
        document["gateway"] = dump_gateway(config.gateway)
    if config.route_tables:
        document["routeTables"] = dump_route_tables(config.route_tables)
    if config.discovery is not None:
        document["discovery"] = {
            "address": config.discovery.address,
            "resubscribeMaxBackoff": _duration(config.discovery.resubscribe_max_backoff_s),
        }
    return document


def dump_services(services: tuple[ServiceEntry, ...]) -> list[dict[str, Any]]:
    """`outbound.services` of the document (the operator encodes the registry every pod shares once)."""
    return [{"host": s.host, "port": s.port, "endpoints": list(s.endpoints), "addresses": list(s.addresses),
             **({"subsets": dump_subsets(s.subsets)} if s.subsets else {}),
             **({"protocol": s.protocol} if s.protocol else {})}
            for s in services]


def _dump_policy(policy: TracingPolicy) -> dict[str, Any]:
    return _drop_none({
        "enabled": policy.enabled,
        "provider": policy.provider,
        "samplingPercentage": policy.sampling_percentage,
        "disableSpanReporting": policy.disable_span_reporting,
        "disableContextPropagation": policy.disable_context_propagation,
        "customTags": {tag.name: dump_custom_tag(tag) for tag in policy.custom_tags},
        "enableIstioTags": policy.enable_istio_tags,
        "useRequestIdForTraceSampling": policy.use_request_id_for_trace_sampling,
    })


def dump_custom_tag(tag: CustomTag) -> dict[str, Any]:
    if tag.kind == "literal":
        return {"literal": {"value": tag.source}}
    return {tag.kind: _drop_none({"name": tag.source, "defaultValue": tag.default})}


def dump_provider(provider: ProviderConfig) -> dict[str, Any]:
    batch = provider.batch
    settings: dict[str, Any] = {
        "service": provider.service,
        "port": provider.port,
        "maxTagLength": provider.max_tag_length,
        "connectTimeout": _duration(provider.connect_timeout_s),
        "batch": {"maxSpans": batch.max_spans, "flushInterval": _duration(batch.flush_interval_s),
                  "queueSize": batch.queue_size, "maxRetries": batch.max_retries},
    }
    headers = [{"name": name, "value": value} for name, value in provider.headers]
    if provider.transport == "grpc":
        settings["grpc"] = {"timeout": _duration(provider.timeout_s), "initialMetadata": headers}
    else:
        http = {"path": provider.path, "timeout": _duration(provider.timeout_s), "headers": headers}
        settings.update({"http": http} if provider.kind == "opentelemetry" else http)
    if provider.resource_detectors:
        settings["resourceDetectors"] = {name: {} for name in provider.resource_detectors}
    if provider.kind == "zipkin":
        settings["enable64bitTraceId"] = provider.enable_64bit_trace_id
        settings["traceContextOption"] = provider.trace_context_option
    settings.update(_dump_extensions(provider))
    return {"name": provider.name, provider.kind: settings}


def _duration(seconds: float | None) -> str | None:
    return None if seconds is None else format_duration(seconds)


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
