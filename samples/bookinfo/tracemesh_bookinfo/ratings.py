"""ratings: each reviewer's stars for a book (Istio's Node.js service, in-memory variant)."""

from __future__ import annotations

import json

from aiohttp import web

from tracemesh_bookinfo.settings import Settings

DEFAULT_RATINGS = {"Reviewer1": 5, "Reviewer2": 4}


def make_app(settings: Settings) -> web.Application:
    routes = web.RouteTableDef()
    # Ratings a user POSTed, by product id; like Istio's, they live as long as the process.
    posted: dict[int, dict[str, int]] = {}

    @routes.get("/health")
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "Ratings is healthy"})

    @routes.get("/ratings/{product_id}")
    async def get_ratings(request: web.Request) -> web.Response:
        product_id = _product_id(request)
        if product_id is None:
            return _bad_request("please provide numeric product ID")
        return web.json_response({"id": product_id, "ratings": posted.get(product_id, DEFAULT_RATINGS)})

    @routes.post("/ratings/{product_id}")
    async def post_ratings(request: web.Request) -> web.Response:
        product_id = _product_id(request)
        if product_id is None:
            return _bad_request("please provide numeric product ID")
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict) or not all(
                isinstance(stars, int) and not isinstance(stars, bool) for stars in body.values()):
            return _bad_request("please provide valid ratings JSON")
        posted[product_id] = body
        return web.json_response({"id": product_id, "ratings": body})

    app = web.Application()
    app.add_routes(routes)
    return app


def _product_id(request: web.Request) -> int | None:
    try:
        return int(request.match_info["product_id"])
    except ValueError:
        return None


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)
