"""ExporterSet follows configuration: unchanged providers keep their queue, changed and removed ones flush."""

from __future__ import annotations

import time
from dataclasses import replace

from collector_double import SLOW, CollectorDouble, make_span, running_collector, wait_until

from tracemesh_sidecar.export import ExporterSet
from tracemesh_sidecar.stats import Stats


async def test_unchanged_provider_keeps_its_queue() -> None:
    async with running_collector() as collector:
        exporters = ExporterSet(Stats())
        provider = collector.provider(max_spans=100, flush_interval_s=30)
        exporters.apply([provider])
        for number in range(3):
            exporters.submit("zipkin", make_span(number))
        exporters.apply([replace(provider)])  # equal config, e.g. a reload that changed something else
        assert exporters.queue_depth("zipkin") == 3
        await exporters.close()
        assert len(collector.spans()) == 3


async def test_changed_provider_is_replaced_and_the_old_one_flushes() -> None:
    stats = Stats()
    async with running_collector() as old, running_collector() as new:
        exporters = ExporterSet(stats)
        exporters.apply([old.provider(max_spans=100, flush_interval_s=30)])
        for number in range(4):
            exporters.submit("zipkin", make_span(number))
        exporters.apply([new.provider(max_spans=100, flush_interval_s=0.05)])
        assert exporters.queue_depth("zipkin") == 0
        exporters.submit("zipkin", make_span(10))
        await wait_until(lambda: len(old.spans()) == 4 and len(new.spans()) == 1)
        await exporters.close()
    assert [span.timestamp for span in new.spans()] == [make_span(10).timestamp]
    assert stats.get("tracing.zipkin.spans_submitted") == 5
    assert stats.get("tracing.zipkin.spans_sent") == 5


async def test_removed_provider_flushes_and_later_spans_are_counted() -> None:
    stats = Stats()
    async with running_collector() as zipkin, running_collector() as jaeger:
        exporters = ExporterSet(stats)
        exporters.apply([zipkin.provider(max_spans=100, flush_interval_s=30),
                         jaeger.provider("jaeger", name="jaeger")])
        for number in range(2):
            exporters.submit("zipkin", make_span(number))
        exporters.apply([jaeger.provider("jaeger", name="jaeger")])
        exporters.submit("zipkin", make_span(5))  # a request that started on the old config
        exporters.submit("jaeger", make_span(6))
        await wait_until(lambda: len(zipkin.spans()) == 2 and len(jaeger.spans()) == 1)
        await exporters.close()
    assert exporters.queue_depth("zipkin") is None
    assert stats.get("tracing.zipkin.spans_dropped_unknown_provider") == 1
    assert stats.get("tracing.zipkin.spans_dropped") == 1


async def test_close_is_bounded_when_the_collector_hangs() -> None:
    stats = Stats()
    async with running_collector(status=SLOW) as collector:  # answers after 10 s
        exporters = ExporterSet(stats)
        hanging = replace(collector.provider(max_spans=1, flush_interval_s=30), timeout_s=5.0)
        exporters.apply([hanging])
        exporters.submit("zipkin", make_span(1))
        exporters.apply([replace(hanging, name="other")])  # "zipkin" retires, flushing for up to 5 s
        exporters.submit("other", make_span(2))
        await wait_until(lambda: len(collector.received) == 2)  # both exporters are stuck on the collector
        started = time.monotonic()
        await exporters.close(timeout_s=0.3)  # the shutdown's deadline overtakes the retirement's
        assert time.monotonic() - started < 2.0
    assert stats.get("tracing.zipkin.spans_dropped_closed") == 1
    assert stats.get("tracing.other.spans_dropped_closed") == 1


def test_configured_before_the_loop_runs() -> None:
    stats = Stats()
    exporters = ExporterSet(stats)
    provider = CollectorDouble(port=9).provider()
    exporters.apply([provider])
    exporters.submit("zipkin", make_span(1))
    exporters.apply([replace(provider, port=10)])  # no loop: the old exporter is discarded, its span counted
    assert stats.get("tracing.zipkin.spans_dropped_closed") == 1
    assert exporters.queue_depth("zipkin") == 0
