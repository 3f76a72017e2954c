"""Acceptance: after `tracemesh demo` traffic (real collector, sidecars and Bookinfo, as a user runs it), the
trace UI the demo prints lists the traces for productpage.default, shows every span of one with its
duration, and draws productpage -> details and reviews -> ratings."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
from conftest import Page, duration_text

from tracemesh_cli.demo.ports import pick_free

REQUESTS = 10
RUNNING = "Running; press Ctrl-C to stop."


async def test_the_ui_the_demo_prints_shows_its_traces(browser_page: Page, no_page_problems: None,
                                                       tmp_path: Path) -> None:
    port, zipkin, otlp, query, otlp_grpc = pick_free(5)
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracemesh_cli.main", "demo", "--requests", str(REQUESTS), "--port", str(port),
        "--zipkin-port", str(zipkin), "--otlp-port", str(otlp), "--query-port", str(query),
        "--otlp-grpc-port", str(otlp_grpc), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp_path)})  # logs kept in the test's dir
    try:
        output = await asyncio.wait_for(_read_until(demo, RUNNING), 120)
        printed = re.search(r"trace UI +(\S+)", output)
        assert printed, output
        assert printed[1] == f"http://127.0.0.1:{zipkin}/zipkin/"
        await _check_ui(browser_page, printed[1])
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(demo.wait(), 20)
            except TimeoutError:
                demo.kill()
                await demo.wait()


async def _check_ui(browser_page: Page, url: str) -> None:
    page = browser_page.page
    await page.goto(url)
    await page.select_option("#serviceName", "productpage.default")
    await page.fill("#limit", str(2 * REQUESTS))
    await page.click("#run-query")
    await page.locator("#result-count").wait_for()
    results = await page.locator("li.result").all()
    assert len(results) == REQUESTS
    traces = {}  # as the API has them: the UI must show the same
    async with aiohttp.ClientSession() as http:
        for item in results:
            trace_id = await item.get_attribute("data-trace-id")
            async with http.get(f"{url}api/v2/trace/{trace_id}") as response:
                traces[trace_id] = await response.json()
            assert await item.locator(".span-count").text_content() == f"{len(traces[trace_id])} spans"
    await browser_page.screenshot("demo-search")

    deepest = max(traces, key=lambda trace_id: len(traces[trace_id]))
    spans = traces[deepest]
    assert {span["localEndpoint"]["serviceName"] for span in spans} >= {
        "productpage.default", "details.default", "reviews.default", "ratings.default"}
    await page.locator(f'li.result[data-trace-id="{deepest}"] a').click()
    rows = page.locator("#timeline .span-row[data-span-id]")
    await rows.first.wait_for()
    shown = {await row.get_attribute("data-span-id"): await row.locator(".span-duration").text_content()
             for row in await rows.all()}
    assert shown == {span["id"]: duration_text(span["duration"]) for span in spans}
    await browser_page.screenshot("demo-trace")

    await page.click("#nav-dependency")
    edges = page.locator("#dependency-svg g.edge")
    await edges.first.wait_for()
    drawn = {(await edge.get_attribute("data-parent"), await edge.get_attribute("data-child"))
             for edge in await edges.all()}
    assert {("productpage.default", "details.default"), ("reviews.default", "ratings.default")} <= drawn
    await browser_page.screenshot("demo-dependencies")


async def _read_until(process: asyncio.subprocess.Process, marker: str) -> str:
    assert process.stdout is not None
    output = ""
    while marker not in output:
        line = await process.stdout.readline()
        assert line, f"the demo exited ({await process.wait()}) before {marker!r}:\n{output}"
        output += line.decode(errors="replace")
    return output
