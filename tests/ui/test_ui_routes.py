"""The UI's files as the collector serves them (no browser needed): where, with which media types and headers."""

from __future__ import annotations

import re
from importlib.resources import files

import aiohttp

from tracemesh_collector import RunningCollector

STATIC = files("tracemesh_collector.ui").joinpath("static")


async def test_the_ui_is_served_under_zipkins_path_and_at_jaegers_root(collector: RunningCollector) -> None:
    async with aiohttp.ClientSession() as http:
        for base in (f"{collector.zipkin_url}/zipkin/", f"{collector.query_url}/"):
            async with http.get(base) as page:
                assert page.status == 200 and page.content_type == "text/html"
                assert "default-src 'none'" in page.headers["Content-Security-Policy"]
                assert '<script type="module" src="main.js">' in await page.text()
            async with http.get(base + "main.js") as script:
                assert script.status == 200 and script.content_type == "text/javascript"  # ES modules need it
            async with http.get(base + "api/v2/services") as services:
                assert services.status == 200 and await services.json() == []
        async with http.get(f"{collector.zipkin_url}/zipkin", allow_redirects=False) as bare:
            assert bare.status == 301 and bare.headers["Location"] == "/zipkin/"
        async with http.get(f"{collector.zipkin_url}/zipkin/traces/%3Cx%3E", allow_redirects=False) as link:
            assert link.status == 302 and link.headers["Location"] == "/zipkin/#/traces/%3Cx%3E"
        async with http.get(f"{collector.zipkin_url}/") as index:  # Zipkin's port keeps the collector's index
            assert "tracemesh collector" in await index.text()


def test_every_module_the_page_imports_is_served() -> None:
    """Each `import ... from "./x.js"` names a file in the package (a missing one would break the page)."""
    names = {item.name for item in STATIC.iterdir()}
    for item in STATIC.iterdir():
        if item.name.endswith(".js"):
            imported = set(re.findall(r'from "\./([\w.-]+)"', item.read_text()))
            assert imported <= names, f"{item.name} imports {imported - names}"


def test_no_script_parses_data_as_html() -> None:
    """Span data is attacker-controlled: the UI builds nodes (dom.js), it never parses strings as markup."""
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment"
                       r"|\beval\(|new Function")
    for item in STATIC.iterdir():
        if item.name.endswith(".js"):
            assert not sinks.findall(item.read_text()), item.name
