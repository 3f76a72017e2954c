"""The proxy config document: parsing, defaults, round trips and the errors users see."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tracemesh_sidecar.config import ConfigError, InboundPort, dump_proxy_config, parse_proxy_config
from tracemesh_sidecar.config.fields import parse_duration

NODE = {"podName": "reviews-v2-abc", "namespace": "default", "podIP": "10.244.0.7",
        "canonicalService": "reviews", "canonicalRevision": "v2"}

FULL = yaml.safe_load("""
version: "12"
node: {podName: reviews-v2-abc, namespace: default, podIP: 10.244.0.7, canonicalService: reviews,
       canonicalRevision: v2, serviceAccount: bookinfo-reviews, labels: {app: reviews, version: v2}}
listeners: {outbound: "127.0.0.1:15001", inbound: "0.0.0.0:15006", admin: "127.0.0.1:15000",
            health: off, prometheus: "0.0.0.0:15090"}
inbound:
  appAddress: 127.0.0.1
  ports: [{port: 9080, appPort: 19080, listen: "127.0.0.1:9080"}]
  requestTimeout: 15s
  protocolDetectionTimeout: 0s
outbound:
  services: [{host: ratings.default.svc.cluster.local, port: 9080, endpoints: ["127.0.0.1:29080"],
              addresses: [10.96.0.12, "fd00::0:c"]}]
  connectTimeout: 500ms
  protocolDetectionTimeout: 100ms
tracing:
  client:
    provider: zipkin
    samplingPercentage: 100
    customTags:
      cluster: {literal: {value: kind}}
      user: {header: {name: end-user, defaultValue: anonymous}}
      host: {environment: {name: HOSTNAME}}
  server: {provider: otel, samplingPercentage: 12.5, disableSpanReporting: true}
  extraExtract: [jaeger]
providers:
  - name: zipkin
    zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411, maxTagLength: 100,
             enable64bitTraceId: true, traceContextOption: USE_B3_WITH_W3C_PROPAGATION}
  - name: otel
    opentelemetry:
      service: jaeger-collector.istio-system.svc.cluster.local
      port: 4318
      http: {path: /v1/traces, timeout: 3s, headers: [{name: x-tenant, value: a}]}
  - name: jaeger
    jaeger: {service: jaeger-collector.istio-system.svc.cluster.local, port: 4318}
discovery: {address: "tracemesh-discovery.istio-system.svc:15010"}
""")


def test_full_document_reads_every_field() -> None:
    config = parse_proxy_config(FULL)
    assert config.version == "12"
    assert config.node.service_name == "reviews.default"
    assert config.node.own_host == "reviews.default.svc.cluster.local"
    assert config.node.node_id() == "sidecar~10.244.0.7~reviews-v2-abc.default~default.svc.cluster.local"
    assert config.node.node_id("router").startswith("router~10.244.0.7~")
    assert config.listeners.health is None
    assert config.inbound.ports == (InboundPort(port=9080, app_port=19080, listen="127.0.0.1:9080"),)
    assert config.inbound.request_timeout_s == 15.0
    assert config.outbound.connect_timeout_s == 0.5
    client = config.tracing.client
    assert client.sampling_percentage == 100.0
    assert [(tag.name, tag.kind, tag.source, tag.default) for tag in client.custom_tags] == [
        ("cluster", "literal", "kind", None),
        ("host", "environment", "HOSTNAME", None),
        ("user", "header", "end-user", "anonymous"),
    ]
    assert config.tracing.server.disable_span_reporting
    assert config.tracing.extra_extract == ("jaeger",)
    zipkin, otel, jaeger = config.providers
    assert zipkin.url == "http://zipkin.istio-system.svc.cluster.local:9411/api/v2/spans"
    assert zipkin.propagates_b3 and zipkin.propagates_w3c and zipkin.enable_64bit_trace_id
    assert otel.url == "http://jaeger-collector.istio-system.svc.cluster.local:4318/v1/traces"
    assert otel.timeout_s == 3.0 and otel.headers == (("x-tenant", "a"),)
    assert jaeger.path == "/v1/traces" and jaeger.propagates_w3c and not jaeger.propagates_b3
    assert config.provider("otel") is otel and config.provider("nope") is None
    assert config.discovery is not None and config.discovery.address.endswith(":15010")


def test_dump_then_parse_is_the_same_config() -> None:
    config = parse_proxy_config(FULL)
    document = dump_proxy_config(config)
    assert parse_proxy_config(yaml.safe_load(yaml.safe_dump(document))) == config
    assert document["kind"] == "ProxyConfig"


def test_an_otlp_grpc_provider_and_the_policy_flags_survive_dump_then_parse() -> None:
    document = _with("providers", [{"name": "otel", "opentelemetry": {
        "service": "otel.observability.svc.cluster.local", "port": 4317,
        "grpc": {"timeout": "3s", "initialMetadata": [{"name": "Authorization", "value": "Bearer t"}]},
        "resourceDetectors": {"environment": {}}}}])
    document["tracing"] = {"client": {"provider": "otel", "enableIstioTags": False,
                                      "useRequestIdForTraceSampling": False}}
    config = parse_proxy_config(document)
    [otel] = config.providers
    assert (otel.transport, otel.url, otel.timeout_s) == ("grpc", "grpc://otel.observability.svc.cluster.local:4317",
                                                          3.0)
    assert otel.headers == (("Authorization", "Bearer t"),) and otel.resource_detectors == ("environment",)
    client = config.tracing.client
    assert not client.enable_istio_tags and not client.use_request_id_for_trace_sampling
    assert parse_proxy_config(yaml.safe_load(yaml.safe_dump(dump_proxy_config(config)))) == config


def test_a_header_in_the_document_is_a_value_never_an_env_name() -> None:
    """istiod (the operator) resolves envName; what reaches a sidecar is the value."""
    document = _with("providers", [{"name": "z", "zipkin": {"service": "z", "port": 1,
                                                            "headers": [{"name": "a", "envName": "A"}]}}])
    with pytest.raises(ConfigError) as caught:
        parse_proxy_config(document)
    assert caught.value.field == "providers[0].zipkin.headers[0].envName"


def test_minimal_document_gets_istio_defaults() -> None:
    config = parse_proxy_config({"node": NODE})
    assert config.listeners.outbound == "127.0.0.1:15001"
    assert config.listeners.inbound == "0.0.0.0:15006"
    assert config.listeners.admin == "127.0.0.1:15000"
    assert config.tracing.client.sampling_percentage == 1.0
    assert config.tracing.client.provider is None
    assert config.providers == ()
    assert config.with_version("3").version == "3"


def test_service_addresses_read_canonical_and_survive_a_round_trip() -> None:
    config = parse_proxy_config(FULL)
    (ratings,) = config.outbound.services
    # Canonical text: what SO_ORIGINAL_DST reports compares equal to it.
    assert ratings.addresses == ("10.96.0.12", "fd00::c")
    assert dump_proxy_config(config)["outbound"]["services"][0]["addresses"] == ["10.96.0.12", "fd00::c"]
    assert parse_proxy_config(dump_proxy_config(config)) == config


def test_protocol_detection_timeout_defaults_to_envoys_listener_filters_timeout() -> None:
    config = parse_proxy_config(FULL)
    assert (config.inbound.protocol_detection_timeout_s, config.outbound.protocol_detection_timeout_s) == (0.0, 0.1)
    assert parse_proxy_config({"node": NODE}).outbound.protocol_detection_timeout_s == 15.0
    assert parse_proxy_config(dump_proxy_config(config)) == config


def test_a_service_without_addresses_has_none() -> None:
    config = parse_proxy_config(_with("outbound.services", [{"host": "a", "port": 1, "endpoints": ["b:2"]}]))
    assert config.outbound.services[0].addresses == ()


def _with(path: str, value: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"node": dict(NODE)}
    cursor = document
    keys = path.split(".")
    for key in keys[:-1]:
        cursor = cursor.setdefault(key, {})
    cursor[keys[-1]] = value
    return document


@pytest.mark.parametrize(("document", "field", "words"), [
    (_with("tracing.client.samplingPercentage", 150), "tracing.client.samplingPercentage", "maximum"),
    (_with("tracing.server.samplingPercentage", -1), "tracing.server.samplingPercentage", "minimum"),
    (_with("tracing.client.samplingPercentage", "lots"), "tracing.client.samplingPercentage", "number"),
    (_with("tracing.client.provider", "zipkin"), "tracing.client.provider", "not in providers"),
    (_with("tracing.client.disableSpanReporting", "yes"), "tracing.client.disableSpanReporting", "true or false"),
    (_with("tracing.client.customTags", {"t": {"literal": {"value": "a"}, "header": {"name": "b"}}}),
     "tracing.client.customTags.t", "exactly one"),
    (_with("tracing.extraExtract", ["datadog"]), "tracing.extraExtract[0]", "jaeger"),
    (_with("listeners.outbound", "15001"), "listeners.outbound", "host:port"),
    (_with("listeners.admin", "0.0.0.0:15000"), "listeners.admin", "loopback"),
    (_with("listeners.admin", "10.1.2.3:15000"), "listeners.admin", "loopback"),
    (_with("inbound.ports", [{"port": 70000}]), "inbound.ports[0].port", "maximum"),
    (_with("inbound.requestTimeout", "soon"), "inbound.requestTimeout", "duration"),
    (_with("outbound.services", [{"host": "a", "port": 1, "endpoints": ["nohost"]}]),
     "outbound.services[0].endpoints[0]", "host:port"),
    (_with("outbound.services", [{"host": "a", "port": 1, "endpoints": [], "addresses": ["reviews"]}]),
     "outbound.services[0].addresses[0]", "IP address"),
    (_with("providers", [{"name": "z"}]), "providers[0]", "exactly one provider kind"),
    (_with("providers", [{"name": "z", "zipkin": {"service": "z", "port": 1}},
                         {"name": "z", "zipkin": {"service": "y", "port": 2}}]), "providers", "twice"),
    (_with("providers", [{"name": "z", "zipkin": {"service": "z", "port": 1, "traceContextOption": "B3"}}]),
     "providers[0].zipkin.traceContextOption", "USE_B3"),
    (_with("providers", [{"name": "z", "zipkin": {"port": 1}}]), "providers[0].zipkin.service", "required"),
    (_with("node.colour", "blue"), "node.colour", "not a known field"),
    ({"node": {"namespace": "default", "canonicalService": "x"}}, "node.podName", "required"),
    ({"node": "productpage"}, "node", "mapping"),
    ([1, 2], "document", "mapping"),
])
def test_bad_documents_name_the_field_and_the_fix(document: Any, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_proxy_config(document)
    assert caught.value.field == field
    assert words in str(caught.value)
    assert caught.value.fix  # every error says what to do


@pytest.mark.parametrize(("text", "seconds"), [
    ("2s", 2.0), ("500ms", 0.5), ("1.5s", 1.5), ("1m", 60.0), ("1h", 3600.0), (3, 3.0), (0.25, 0.25), ("7", 7.0),
    ("1m30s", 90.0), ("250us", 0.00025), (" 2 s ", 2.0), ("0.1s", 0.1),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, "f") == seconds


@pytest.mark.parametrize("text", ["", "2 weeks", "-1s", True, None, "1e3s"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text, "f")


@pytest.mark.parametrize("seconds", [2_592_000.0, 1_234_567.5, 0.000_25, 0.123_456, 0.000_05, 30.0])
def test_every_duration_survives_dump_then_parse(seconds: float) -> None:
    # The operator pushes dumped documents: a duration the sidecar cannot read back rejects the whole config.
    document = {"node": {"podName": "p", "namespace": "n", "canonicalService": "s"},
                "inbound": {"requestTimeout": seconds}}
    config = parse_proxy_config(document)
    assert parse_proxy_config(dump_proxy_config(config)) == config
