"""reviews: two reviews of the book; v2 and v3 add stars from ratings (Istio's Java service)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tracemesh_bookinfo import client
from tracemesh_bookinfo.headers import propagated_headers
from tracemesh_bookinfo.settings import Settings

REVIEWS = (
    ("Reviewer1", "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"),
    ("Reviewer2", "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays "
                  "by Shakespeare."),
)
RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"


def reviews_body(settings: Settings, product_id: str, stars: dict[str, int] | None) -> dict[str, Any]:
    """The response, given the stars ratings returned (None: ratings failed or is off)."""
    reviews = []
    for reviewer, text in REVIEWS:
        review: dict[str, Any] = {"reviewer": reviewer, "text": text}
        if settings.ratings_enabled:
            if stars is not None and isinstance(stars.get(reviewer), int):
                review["rating"] = {"stars": stars[reviewer], "color": settings.star_color}
            else:
                review["rating"] = {"error": RATINGS_UNAVAILABLE}
        reviews.append(review)
    return {"id": product_id, "podname": settings.pod_name, "clustername": settings.cluster_name,
            "reviews": reviews}


def make_app(settings: Settings) -> web.Application:
    routes = web.RouteTableDef()
    # Istio's reviews waits longer for ratings in v2 (black) than in v3 (red), which the
    # timeout tasks rely on.
    ratings_timeout_s = 10.0 if settings.star_color == "black" else 2.5

    @routes.get("/health")
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "Reviews is healthy"})

    @routes.get("/reviews/{product_id}")
    async def reviews(request: web.Request) -> web.Response:
        product_id = request.match_info["product_id"]
        stars = None
        if settings.ratings_enabled:
            status, body = await client.get_json(
                request.app[client.SESSION], settings.ratings.url(f"/ratings/{product_id}"),
                propagated_headers(request.headers.items()), ratings_timeout_s)
            if status == 200 and isinstance(body, dict) and isinstance(body.get("ratings"), dict):
                stars = body["ratings"]
        return web.json_response(reviews_body(settings, product_id, stars))

    app = web.Application()
    app.add_routes(routes)
    app.cleanup_ctx.append(client.session_context)
    return app
