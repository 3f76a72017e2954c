"""The sidecar's exporters (interface 2) deliver to the collector over both wire formats the mesh uses."""

from __future__ import annotations

from collector_samples import NOW_US, bookinfo_trace, trace_id

from tracemesh_collector import RunningCollector
from tracemesh_sidecar.config.model import ProviderConfig
from tracemesh_sidecar.export import ExporterSet
from tracemesh_sidecar.stats import Stats


async def test_zipkin_json_and_otlp_exports_arrive_whole(collector: RunningCollector) -> None:
    exporters = ExporterSet(Stats())
    exporters.apply([
        ProviderConfig(name="zipkin", kind="zipkin", service="127.0.0.1", port=collector.zipkin_port,
                       path="/api/v2/spans"),
        ProviderConfig(name="jaeger", kind="jaeger", service="127.0.0.1", port=collector.otlp_port, path="/v1/traces"),
    ])
    by_zipkin = bookinfo_trace(trace_id(1), NOW_US - 2_000_000)
    by_otlp = bookinfo_trace("4e441824ec2b6a44ffdc9bb9a6453df3", NOW_US - 1_000_000)
    for span in by_zipkin:
        exporters.submit("zipkin", span)
    for span in by_otlp:
        exporters.submit("jaeger", span)
    await exporters.close(timeout_s=5.0)
    for sent in (by_zipkin, by_otlp):
        received = collector.store.get_trace(sent[0].trace_id)
        assert sorted((s.id, s.parent_id, s.kind, s.local_endpoint.service_name) for s in received) == sorted(
            (s.id, s.parent_id, s.kind, s.local_endpoint.service_name) for s in sent)
