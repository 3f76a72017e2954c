"""productpage: the HTML front page and JSON API; calls details and reviews (Istio's Python service)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tracemesh_bookinfo import client
from tracemesh_bookinfo.headers import propagated_headers
from tracemesh_bookinfo.page import render_productpage
from tracemesh_bookinfo.settings import Settings, Upstream

PRODUCTS: list[dict[str, Any]] = [{
    "id": 0,
    "title": "The Comedy of Errors",
    "descriptionHtml": '<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: '
                       "The Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his shortest "
                       "and one of his most farcical comedies, with a major part of the humour coming from slapstick "
                       "and mistaken identity, in addition to puns and word play.",
}]
USER_COOKIE = "user"
BACKEND_TIMEOUT_S = 3.0  # Istio's productpage gives details and reviews 3 s each


def _unavailable(what: str) -> dict[str, str]:
    return {"error": f"Sorry, product {what} are currently unavailable for this book."}


def forward_headers(request: web.Request) -> CIMultiDict[str]:
    """The trace and user headers to send on; a signed-in user travels as `end-user`, as in Istio."""
    headers = propagated_headers(request.headers.items())
    user = request.cookies.get(USER_COOKIE)
    if user:
        headers["end-user"] = user
    return headers


def make_app(settings: Settings) -> web.Application:
    routes = web.RouteTableDef()

    async def call(request: web.Request, upstream: Upstream, path: str, what: str) -> tuple[int, Any]:
        """`(200, body)`, or the failure status and Istio's "currently unavailable" body."""
        status, body = await client.get_json(request.app[client.SESSION], upstream.url(path),
                                             forward_headers(request), BACKEND_TIMEOUT_S)
        if status != 200 or not isinstance(body, dict):
            return (status if status != 200 else client.UNAVAILABLE), _unavailable(what)
        return 200, body

    async def details(request: web.Request, product_id: str) -> tuple[int, Any]:
        return await call(request, settings.details, f"/details/{product_id}", "details")

    async def reviews(request: web.Request, product_id: str) -> tuple[int, Any]:
        return await call(request, settings.reviews, f"/reviews/{product_id}", "reviews")

    async def ratings(request: web.Request, product_id: str) -> tuple[int, Any]:
        return await call(request, settings.ratings, f"/ratings/{product_id}", "ratings")

    @routes.get("/")
    async def index(request: web.Request) -> web.Response:
        return web.Response(content_type="text/html", text=(
            "<!DOCTYPE html><html><head><title>Simple Bookstore App</title></head><body>"
            "<h3>Hello! This is a simple bookstore application consisting of three services as shown below</h3>"
            '<p>Click on one of the links below to auto generate a request to the backend as a real user or a '
            'tester</p><p><a href="/productpage?u=normal">Normal user</a></p>'
            '<p><a href="/productpage?u=test">Test user</a></p></body></html>'))

    @routes.get("/health")
    async def health(request: web.Request) -> web.Response:
        return web.Response(text="Product page is healthy")

    @routes.post("/login")
    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        redirect = web.HTTPFound("productpage")
        user = str(form.get("username", "")).strip()
        if user:
            redirect.set_cookie(USER_COOKIE, user, httponly=True, samesite="Lax")
        raise redirect

    @routes.post("/logout")
    async def logout(request: web.Request) -> web.Response:
        redirect = web.HTTPFound("productpage")
        redirect.del_cookie(USER_COOKIE)
        raise redirect

    @routes.get("/productpage")
    async def productpage(request: web.Request) -> web.Response:
        product_id = "0"
        # One after the other, as Istio's productpage does, so the trace reads the same.
        details_status, details_body = await details(request, product_id)
        reviews_status, reviews_body = await reviews(request, product_id)
        html = render_productpage(PRODUCTS[0], details_status, details_body, reviews_status, reviews_body,
                                  request.cookies.get(USER_COOKIE, ""))
        return web.Response(content_type="text/html", text=html)

    @routes.get("/api/v1/products")
    async def products(request: web.Request) -> web.Response:
        return web.json_response(PRODUCTS)

    @routes.get("/api/v1/products/{product_id}")
    async def product(request: web.Request) -> web.Response:
        status, body = await details(request, request.match_info["product_id"])
        return web.json_response(body, status=status)

    @routes.get("/api/v1/products/{product_id}/reviews")
    async def product_reviews(request: web.Request) -> web.Response:
        status, body = await reviews(request, request.match_info["product_id"])
        return web.json_response(body, status=status)

    @routes.get("/api/v1/products/{product_id}/ratings")
    async def product_ratings(request: web.Request) -> web.Response:
        status, body = await ratings(request, request.match_info["product_id"])
        return web.json_response(body, status=status)

    app = web.Application()
    app.add_routes(routes)
    app.cleanup_ctx.append(client.session_context)
    return app
