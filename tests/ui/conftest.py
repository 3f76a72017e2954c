"""Fixtures for the trace UI tests: Debian's Chromium driven by Playwright, a collector holding Bookinfo traces.

Playwright's own browser download is never used (`playwright install` is not run anywhere): the
tests drive /usr/bin/chromium from Debian's `chromium` package, which .ci/run installs, and skip
with the reason where it is missing. Screenshots go to test-artifacts/ui/ (git-ignored).
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest

from tracemesh_collector import RunningCollector, run_collector
from tracemesh_sidecar.spans.model import Span
from tracemesh_sidecar.spans.zipkin_json import encode_spans

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bookinfo"))
from bookinfo_traces import START_US, bookinfo_trace

if TYPE_CHECKING:
    from playwright.async_api import ConsoleMessage, Dialog
    from playwright.async_api import Page as PlaywrightPage

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that reaches out to the network or keeps state between runs.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
REVIEWS_VERSIONS = ("v1", "v2", "v3")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if ARTIFACTS.is_dir() and any(ARTIFACTS.iterdir()):
        terminalreporter.write_line(f"trace UI screenshots: {ARTIFACTS}")


@pytest.fixture
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: Debian's `chromium` package provides it (apt-get install chromium)")
    pytest.importorskip("playwright", reason="the test extra's `playwright` (pip install -e .[test]) drives Chromium")
    return CHROMIUM


@pytest.fixture
async def browser_page(chromium_path: Path, tmp_path: Path) -> AsyncIterator[Page]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile", executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900})
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            page.set_default_timeout(20_000)
            yield Page(page)
        finally:
            await context.close()


class Page:
    """The browser page and what went wrong in it: uncaught errors, console errors, dialogs (an alert() would
    mean injected script ran)."""

    def __init__(self, page: PlaywrightPage) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        page.on("console", self._console)
        page.on("dialog", self._dialog)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(message.text)

    async def _dialog(self, dialog: Dialog) -> None:
        self.problems.append(f"dialog: {dialog.message}")
        await dialog.dismiss()

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
async def collector() -> AsyncIterator[RunningCollector]:
    async with run_collector("127.0.0.1", zipkin_port=0, otlp_port=0, query_port=0, otlp_grpc_port=0) as running:
        yield running


def recorded_bookinfo_traces(now_us: int) -> list[list[Span]]:
    """One Bookinfo request per reviews version, as the sample helpers build them, moved to a minute ago
    (so the UI's default time range holds them), each with its own trace id."""
    traces = []
    for number, version in enumerate(REVIEWS_VERSIONS, start=1):
        shift = now_us - 60_000_000 + number * 1_000_000 - START_US
        trace_id = f"463ac35c9f6413ad48485a3953bb61{number:02x}"
        traces.append([replace(span, trace_id=trace_id, timestamp=(span.timestamp or 0) + shift)
                       for span in bookinfo_trace(version)])
    return traces


async def post_spans(collector: RunningCollector, spans: list[Span]) -> None:
    async with aiohttp.ClientSession() as http, http.post(
            f"{collector.zipkin_url}/api/v2/spans", data=encode_spans(spans),
            headers={"Content-Type": "application/json"}) as response:
        assert response.status == 202, await response.text()


@pytest.fixture
async def bookinfo_traces(collector: RunningCollector) -> list[list[Span]]:
    traces = recorded_bookinfo_traces(int(time.time() * 1_000_000))
    for spans in traces:
        await post_spans(collector, spans)
    return traces


def duration_text(us: int) -> str:
    """A duration as the UI prints it (format.js's formatDuration), to compare with what the page shows."""
    if us < 1000:
        return f"{us}μs"
    value, unit = (us / 1000, "ms") if us < 1_000_000 else (us / 1_000_000, "s")
    return f"{value:.3f}".rstrip("0").rstrip(".") + unit


@pytest.fixture
def no_page_problems(browser_page: Page) -> Iterator[None]:
    yield
    assert browser_page.problems == []
