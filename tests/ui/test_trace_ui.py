"""The trace UI in a real browser: search, a trace's timeline and span details, the dependency graph,
on Zipkin's port under /zipkin/ and on Jaeger's at its root, fed with recorded Bookinfo traces."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from conftest import Page, duration_text, post_spans, recorded_bookinfo_traces

from tracemesh_collector import RunningCollector
from tracemesh_sidecar.spans.model import Annotation, Endpoint, Span

if TYPE_CHECKING:
    from playwright.async_api import Page as PlaywrightPage


def ui_url(collector: RunningCollector, where: str) -> str:
    return f"{collector.zipkin_url}/zipkin/" if where == "zipkin" else f"{collector.query_url}/"


@pytest.mark.parametrize("where", ["zipkin", "jaeger"])
async def test_search_lists_the_bookinfo_traces_and_a_trace_shows_every_span(
        where: str, collector: RunningCollector, bookinfo_traces: list[list[Span]], browser_page: Page,
        no_page_problems: None) -> None:
    page = browser_page.page
    await page.goto(ui_url(collector, where))
    await page.select_option("#serviceName", "productpage.default")
    await page.click("#run-query")
    results = page.locator("li.result")
    await results.first.wait_for()
    assert await results.count() == len(bookinfo_traces)
    listed = {await item.get_attribute("data-trace-id") for item in await results.all()}
    assert listed == {spans[0].trace_id for spans in bookinfo_traces}
    for spans in bookinfo_traces:
        item = page.locator(f'li.result[data-trace-id="{spans[0].trace_id}"]')
        await _expect_text(item.locator(".span-count"), f"{len(spans)} spans")
        await _expect_text(item.locator(".root"), "productpage.default: productpage.default.svc.cluster.local:9080/*")
    await browser_page.screenshot(f"{where}-search")

    deepest = max(bookinfo_traces, key=len)  # reviews v2: productpage -> details, reviews -> ratings
    await page.locator(f'li.result[data-trace-id="{deepest[0].trace_id}"] a').click()
    rows = page.locator("#timeline .span-row[data-span-id]")
    await rows.first.wait_for()
    assert await rows.count() == len(deepest)
    by_id = {span.id: span for span in deepest}
    for row in await rows.all():
        span = by_id[await row.get_attribute("data-span-id") or ""]
        assert await row.locator(".span-duration").text_content() == duration_text(span.duration or 0)
        assert await row.locator(".span-service").text_content() == span.local_endpoint.service_name
    depths = {await row.get_attribute("data-span-id"): int(await row.get_attribute("data-depth") or -1)
              for row in await rows.all()}
    assert depths == {span.id: _depth(span, by_id) for span in deepest}
    # productpage calls details, then reviews: one after the other, so every span is on the critical path
    critical = {await row.get_attribute("data-span-id") for row in await page.locator(".on-critical-path").all()}
    assert critical == set(by_id)
    ratings = next(span for span in deepest if span.local_endpoint.service_name == "ratings.default")
    await browser_page.screenshot(f"{where}-trace")

    await page.locator(f'.span-row[data-span-id="{ratings.id}"]').click()
    facts = page.locator("#span-details table.span-facts")
    await _expect_text(facts, f"Span ID{ratings.id}")
    await _expect_text(facts, f"Parent ID{ratings.parent_id}")
    await _expect_text(facts, "KindSERVER")
    await _expect_text(facts, "Local endpointratings.default 10.0.0.1")
    await _expect_text(page.locator("#span-details table.tags"), "istio.canonical_serviceratings")
    await browser_page.screenshot(f"{where}-span-details")

    await page.select_option("#service-filter", "reviews.default")
    visible = page.locator("#timeline .span-row[data-span-id]:visible")
    assert {await row.get_attribute("data-service") for row in await visible.all()} == {"reviews.default"}
    await _expect_text(page.locator("#shown-count"), f"2 of {len(deepest)} spans")


@pytest.mark.parametrize("where", ["zipkin", "jaeger"])
async def test_dependency_graph_draws_the_bookinfo_calls(
        where: str, collector: RunningCollector, bookinfo_traces: list[list[Span]], browser_page: Page,
        no_page_problems: None) -> None:
    page = browser_page.page
    await page.goto(ui_url(collector, where))
    await page.click("#nav-dependency")
    graph = page.locator("#dependency-svg")
    await graph.wait_for()
    edges = {(await edge.get_attribute("data-parent"), await edge.get_attribute("data-child"))
             for edge in await graph.locator("g.edge").all()}
    assert edges == {("productpage.default", "details.default"), ("productpage.default", "reviews.default"),
                     ("reviews.default", "ratings.default")}
    nodes = [await text.text_content() for text in await graph.locator("g.node text").all()]
    assert sorted(nodes) == ["details.default", "productpage.default", "ratings.default", "reviews.default"]
    # callers are drawn left of the services they call
    x = {service: await _x(graph, service) for service in ("productpage.default", "reviews.default", "ratings.default")}
    assert x["productpage.default"] < x["reviews.default"] < x["ratings.default"]
    await browser_page.screenshot(f"{where}-dependencies")


async def test_critical_path_skips_a_call_made_in_parallel_with_a_longer_one(
        collector: RunningCollector, browser_page: Page) -> None:
    """model.js's criticalPath, run in the browser: of two overlapping calls only the one finishing last counts,
    and the parent owns the time before and after it (jaeger-ui's TracePage/CriticalPath)."""
    page = browser_page.page
    await page.goto(ui_url(collector, "jaeger"))
    sections = await page.evaluate("""async () => {
        const { spanTree, criticalPath } = await import("./model.js");
        const span = (id, parentId, timestamp, duration) => ({ traceId: "1", id, parentId, timestamp, duration });
        const rows = spanTree([span("a", undefined, 0, 100), span("b", "a", 10, 40), span("c", "a", 20, 70),
                               span("d", "c", 30, 80)]);
        return Object.fromEntries([...criticalPath(rows)].map(([node, parts]) => [node.span.id, parts]));
    }""")
    # b ends at 50, after c started (20): not on the path. d overruns its parent c (110 > 90) and is clipped to
    # c's end, so all of c after d's start is d's.
    assert sections == {"a": [[90, 100], [0, 20]], "c": [[20, 30]], "d": [[30, 90]]}


async def test_a_shared_server_span_nests_under_the_client_span_with_its_id(
        collector: RunningCollector, browser_page: Page) -> None:
    """model.js's spanTree builds the tree as Zipkin's SpanNode.Builder does: a shared SERVER span (same id as
    the caller's CLIENT span) hangs under that CLIENT, and the server's own children under the shared span."""
    page = browser_page.page
    await page.goto(ui_url(collector, "jaeger"))
    tree = await page.evaluate("""async () => {
        const { spanTree } = await import("./model.js");
        const rows = spanTree([
          { id: "c", parentId: "a", kind: "CLIENT", timestamp: 2, localEndpoint: { serviceName: "front" } },
          { id: "a", kind: "SERVER", timestamp: 1, localEndpoint: { serviceName: "front" } },
          { id: "d", parentId: "c", kind: "CLIENT", timestamp: 4, localEndpoint: { serviceName: "b" } },
          { id: "c", parentId: "a", kind: "SERVER", shared: true, timestamp: 3, localEndpoint: { serviceName: "b" } },
        ]);
        return rows.map((node) => [node.span.id, node.span.kind, node.depth]);
    }""")
    assert tree == [["a", "SERVER", 0], ["c", "CLIENT", 1], ["c", "SERVER", 2], ["d", "CLIENT", 3]]


async def test_a_tag_value_with_markup_shows_as_text(collector: RunningCollector, browser_page: Page) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    [root, *rest] = recorded_bookinfo_traces(int(time.time() * 1_000_000))[0]
    marked_up = replace(root, name=hostile, tags={**root.tags, "hostile": hostile},
                        annotations=[Annotation(root.timestamp or 0, hostile)], remote_endpoint=Endpoint(hostile))
    await post_spans(collector, [marked_up, *rest])
    page = browser_page.page
    await page.goto(f"{collector.zipkin_url}/zipkin/#/traces/{root.trace_id}")
    await page.locator(f'.span-row[data-span-id="{root.id}"]').click()
    cell = page.locator("#span-details table.tags tr", has_text="hostile").locator("td")
    assert await cell.text_content() == hostile
    assert await page.locator(f'.span-row[data-span-id="{root.id}"] .span-name').text_content() == hostile
    assert await page.locator("#span-details table.annotations td").text_content() == hostile
    await _expect_text(page.locator("#span-details table.span-facts"), f"Remote endpoint{hostile}")
    assert await page.locator("img").count() == 0
    await browser_page.screenshot("hostile-tag")
    assert browser_page.problems == []  # no alert() ran, no error


async def _expect_text(locator: object, text: str) -> None:
    from playwright.async_api import Locator, expect

    assert isinstance(locator, Locator)
    await expect(locator).to_contain_text(text)


def _depth(span: Span, by_id: dict[str, Span]) -> int:
    return 0 if span.parent_id not in by_id else 1 + _depth(by_id[span.parent_id], by_id)


async def _x(graph: object, service: str) -> float:
    from playwright.async_api import Locator

    assert isinstance(graph, Locator)
    return float(await graph.locator(f'g.node[data-service="{service}"] rect').get_attribute("x") or "nan")


async def test_search_narrows_by_span_name_tags_duration_and_time_range(
        collector: RunningCollector, bookinfo_traces: list[list[Span]], browser_page: Page,
        no_page_problems: None) -> None:
    v1, v2, v3 = (spans[0].trace_id for spans in bookinfo_traces)
    now_us = int(time.time() * 1_000_000)
    [old] = [[replace(span, trace_id="aa" * 16, timestamp=(span.timestamp or 0) - 2 * 3_600_000_000)
              for span in spans] for spans in recorded_bookinfo_traces(now_us)[:1]]
    await post_spans(collector, old)  # two hours ago: outside the default hour
    page = browser_page.page
    await page.goto(ui_url(collector, "zipkin"))

    assert await _search(page, service="productpage.default") == {v1, v2, v3}
    assert await _search(page, service="productpage.default", lookback="21600000") == {v1, v2, v3, old[0].trace_id}
    assert await _search(page, service="ratings.default", span_name="ratings.default.svc.cluster.local:9080/*") == {
        v2, v3}
    assert await _search(page, tags="istio.canonical_revision=v3") == {v3}
    # the reviews SERVER span lasts 5.8ms in every trace: a span of 5.5ms or more exists, one over 6.5ms does not
    assert await _search(page, service="reviews.default", min_duration="5.5ms") == {v1, v2, v3}
    assert await _search(page, service="reviews.default", min_duration="6.5ms") == set()
    assert await _search(page, service="reviews.default", max_duration="100us") == set()
    assert "serviceName=reviews.default" in page.url and "maxDuration=100" in page.url  # a bookmarkable search


async def test_a_trace_with_an_error_is_marked_and_bad_input_is_reported(
        collector: RunningCollector, browser_page: Page) -> None:
    [root, *rest] = recorded_bookinfo_traces(int(time.time() * 1_000_000))[0]
    await post_spans(collector, [root, *(replace(span, tags={**span.tags, "error": "boom"}) for span in rest[:1]),
                                 *rest[1:]])
    page = browser_page.page
    await page.goto(ui_url(collector, "jaeger"))
    assert await _search(page, service="productpage.default") == {root.trace_id}
    await _expect_text(page.locator("li.result.error .error-mark"), "1 errors")
    await page.locator("li.result a").click()
    await _expect_text(page.locator(".span-row .span-bar.error").locator("xpath=../.."), rest[0].name)

    await page.goto(ui_url(collector, "jaeger"))
    await page.fill("#minDuration", "soon")
    await page.click("#run-query")
    await _expect_text(page.locator("#errors [role=alert]"), '"soon" is not a duration')
    await page.goto(f"{collector.query_url}/#/traces/{'b' * 32}")
    await _expect_text(page.locator("#errors [role=alert]"), "404")
    assert browser_page.problems == ["Failed to load resource: the server responded with a status of 404 (Not Found)"]


@pytest.mark.parametrize(("where", "link"), [("zipkin", "/zipkin/traces/{}"), ("jaeger", "/trace/{}")])
async def test_links_to_a_trace_in_zipkins_and_jaegers_form_open_it(
        where: str, link: str, collector: RunningCollector, bookinfo_traces: list[list[Span]], browser_page: Page,
        no_page_problems: None) -> None:
    spans = bookinfo_traces[0]
    base = collector.zipkin_url if where == "zipkin" else collector.query_url
    await browser_page.page.goto(base + link.format(spans[0].trace_id))
    assert await browser_page.page.locator("#timeline .span-row[data-span-id]").count() == len(spans)


async def _search(page: PlaywrightPage, *, service: str = "", span_name: str = "", tags: str = "",
                  min_duration: str = "", max_duration: str = "", lookback: str = "3600000") -> set[str]:
    """Fills the form as a user does, runs the query and returns the listed trace ids."""
    await page.goto(page.url.split("#")[0])
    await page.locator("#serviceName option", has_text="productpage.default").wait_for(state="attached")
    await page.select_option("#serviceName", service)
    if span_name:
        await page.locator("#spanName option", has_text=span_name).wait_for(state="attached")
        await page.select_option("#spanName", span_name)
    await page.fill("#annotationQuery", tags)
    await page.fill("#minDuration", min_duration)
    await page.fill("#maxDuration", max_duration)
    await page.select_option("#lookback", lookback)
    await page.click("#run-query")
    await page.locator("#result-count").wait_for()
    return {await item.get_attribute("data-trace-id") or "" for item in await page.locator("li.result").all()}
