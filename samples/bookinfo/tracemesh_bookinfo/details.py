"""details: the book's publishing facts (Istio's Ruby service)."""

from __future__ import annotations

from aiohttp import web

from tracemesh_bookinfo.settings import Settings


def book_details(product_id: int) -> dict[str, object]:
    return {
        "id": product_id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }


def make_app(settings: Settings) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/health")
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "Details is healthy"})

    @routes.get("/details/{product_id}")
    async def details(request: web.Request) -> web.Response:
        try:
            product_id = int(request.match_info["product_id"])
        except ValueError:
            return web.json_response({"error": "please provide numeric product id"}, status=400)
        return web.json_response(book_details(product_id))

    app = web.Application()
    app.add_routes(routes)
    return app
