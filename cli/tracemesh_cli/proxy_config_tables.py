"""A sidecar's config_dump -> the tables `tracemesh proxy-config tracing|clusters|listeners` prints: pure.

The columns follow istioctl's (istioctl/pkg/writer/envoy/configdump: `SERVICE FQDN  PORT  SUBSET
DIRECTION  TYPE ...` for clusters, `ADDRESSES  PORT  MATCH  DESTINATION` for listeners), filled
from tracemesh's one config document, read with the sidecar's own parser. Cluster names are
Envoy's (`outbound|9080||reviews.default.svc.cluster.local`, `inbound|9080||`), as the spans'
`upstream_cluster` tag writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tracemesh_sidecar.config import ProxyConfig
from tracemesh_sidecar.config.model import TracingPolicy

VIEWS = ("tracing", "clusters", "listeners")
# The config_dump keys each view shows with -o json|yaml.
SECTIONS = {"tracing": ("tracing", "providers"), "clusters": ("outbound", "inbound"), "listeners": ("listeners",)}


def section(dump: Mapping[str, Any], view: str) -> dict[str, Any]:
    return {key: dump[key] for key in SECTIONS[view] if key in dump}


def render(config: ProxyConfig, view: str) -> str:
    if view == "tracing":
        return tracing_table(config)
    if view == "clusters":
        return clusters_table(config)
    return listeners_table(config)


def tracing_table(config: ProxyConfig) -> str:
    directions = table(("DIRECTION", "PROVIDER", "SAMPLING", "REPORTING", "PROPAGATION", "CUSTOM TAGS"), [
        (direction, *_policy_cells(policy)) for direction, policy in
        (("outbound (client)", config.tracing.client), ("inbound (server)", config.tracing.server))])
    providers = table(("PROVIDER", "KIND", "ENDPOINT", "CONTEXT"), [
        (p.name, p.kind, p.url, "B3+W3C" if p.kind == "zipkin" and p.propagates_w3c else
         "W3C" if p.propagates_w3c else "B3") for p in config.providers])
    return directions + "\n" + providers


def clusters_table(config: ProxyConfig) -> str:
    rows = [(s.host, str(s.port), "-", "outbound", "EDS", str(len(s.endpoints)))
            for s in sorted(config.outbound.services, key=lambda s: (s.host, s.port))]
    rows += [(p.service_host or "", str(p.port), "-", "inbound", "STATIC",
              f"{config.inbound.app_address}:{p.app_port}") for p in config.inbound.ports]
    return table(("SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "ENDPOINTS"), rows)


def listeners_table(config: ProxyConfig) -> str:
    listeners = config.listeners
    rows: list[Sequence[str]] = []
    if listeners.outbound:
        rows += [(",".join(s.addresses) or "0.0.0.0", str(s.port), "ALL", f"Cluster: outbound|{s.port}||{s.host}")
                 for s in sorted(config.outbound.services, key=lambda s: (s.host, s.port))]
        rows.append((*_split(listeners.outbound), "ALL", "PassthroughCluster (captured outbound)"))
    if listeners.inbound:
        address, port = _split(listeners.inbound)
        rows += [(address, port, f"dst port {p.port}", f"Cluster: inbound|{p.port}||") for p in config.inbound.ports]
        rows.append((address, port, "ALL", "InboundPassthroughCluster"))
    for name, path in (("admin", "/config_dump /stats /clusters"), ("health", "/healthz/ready"),
                       ("prometheus", "/stats/prometheus")):
        listen = getattr(listeners, name)
        if listen:
            rows.append((*_split(listen), "ALL", f"{name}: {path}"))
    return table(("ADDRESSES", "PORT", "MATCH", "DESTINATION"), rows)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [header, *rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() + "\n"
                   for line in lines)


def _policy_cells(policy: TracingPolicy) -> tuple[str, str, str, str, str]:
    if not policy.enabled:
        return "-", "-", "off", "off", "-"
    tags = ",".join(tag.name for tag in policy.custom_tags) or "-"
    return (policy.provider or "-", f"{policy.sampling_percentage:g}%",
            "off" if policy.disable_span_reporting or policy.provider is None else "on",
            "off" if policy.disable_context_propagation else "on", tags)


def _split(listen: str) -> tuple[str, str]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), port
