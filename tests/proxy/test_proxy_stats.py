"""The proxy's own counters (stats.py): counted by name, or through a held counter on the request path, and shown
the same either way."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tracemesh_sidecar.stats import Stats


def test_a_held_counter_and_counts_by_name_add_up_and_show_once_something_is_counted() -> None:
    stats = Stats()
    requests = stats.counter("outbound.downstream_rq_total")
    assert stats.counter("outbound.downstream_rq_total") is requests  # one counter per name
    idle = stats.counter("upstream.cx_reused")
    assert stats.counters == {} and stats.render_text() == ""  # nothing counted, nothing shown

    for _ in range(3):
        requests.inc()
    stats.inc("outbound.downstream_rq_total", 2)
    stats.inc("upstream.cx_total")
    stats.set_gauge("upstream.cx_active", 1)

    assert stats.counters == {"outbound.downstream_rq_total": 5, "upstream.cx_total": 1}
    assert stats.get("outbound.downstream_rq_total") == 5 and stats.get("upstream.cx_reused") == 0
    assert stats.render_text() == ("outbound.downstream_rq_total: 5\nupstream.cx_active: 1\n"
                                   "upstream.cx_total: 1\n")
    samples = {sample.name: sample.value for family in text_string_to_metric_families(stats.render_prometheus())
               for sample in family.samples}
    assert samples == {"tracemesh_outbound_downstream_rq_total_total": 5, "tracemesh_upstream_cx_total_total": 1,
                       "tracemesh_upstream_cx_active": 1}
    idle.inc()
    assert stats.counters["upstream.cx_reused"] == 1
