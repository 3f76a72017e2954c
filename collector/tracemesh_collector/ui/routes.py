"""Serves the trace UI's static files under a prefix: `/zipkin/` on Zipkin's port, `/` on Jaeger's.

The files are package data read once at startup. The UI calls Zipkin's v2 query API relative to
its own URL (`api/v2/...`), so it needs that API under the same prefix. The Content-Security-Policy
lets the page load only its own scripts and styles and talk only to its own origin: a span's tag
value can never become markup, and even if a bug made it so, it could not run.
"""

from __future__ import annotations

from importlib.resources import files
from urllib.parse import quote

from aiohttp import web

from tracemesh_collector.zipkin_api import Handler

CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _static_files() -> dict[str, tuple[bytes, str]]:
    """File name -> (content, media type), for every file the UI consists of."""
    static = files(__package__).joinpath("static")
    found = {}
    for item in static.iterdir():
        suffix = item.name[item.name.rfind("."):]
        if item.is_file() and suffix in CONTENT_TYPES:
            found[item.name] = (item.read_bytes(), CONTENT_TYPES[suffix])
    return found


def ui_routes(prefix: str) -> list[web.RouteDef]:
    """GET routes for the UI at `prefix` (which ends in "/"), plus a redirect from the prefix without its slash,
    since the page's relative URLs only resolve from the directory."""
    if not prefix.endswith("/"):
        raise ValueError(f"the UI's prefix must end in '/', got {prefix!r}")
    static = _static_files()
    routes = [web.get(prefix + name, _handler(*entry)) for name, entry in sorted(static.items())]
    routes.append(web.get(prefix, _handler(*static["index.html"])))
    # links to one trace as Zipkin's UI (/zipkin/traces/{id}) and Jaeger's (/trace/{id}) write them
    for deep_link in ("traces/{traceId}", "trace/{traceId}"):
        routes.append(web.get(prefix + deep_link, _trace_link(prefix)))
    if prefix != "/":
        routes.append(web.get(prefix.rstrip("/"), _redirect(prefix)))
    return routes


def _handler(content: bytes, media_type: str) -> Handler:
    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=content, content_type=media_type, charset="utf-8", headers=SECURITY_HEADERS)
    return serve


def _trace_link(prefix: str) -> Handler:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{prefix}#/traces/{quote(request.match_info['traceId'], safe='')}")
    return redirect


def _redirect(location: str) -> Handler:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(location)
    return redirect
