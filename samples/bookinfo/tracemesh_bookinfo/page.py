"""The HTML productpage renders: the book, its details and its reviews, or error boxes where a backend failed.

Mirrors Istio's productpage template: "Error fetching product details!" / "...reviews!" with the
reason underneath, stars in the reviews' colour, the rating error when ratings is down.
"""

from __future__ import annotations

from html import escape
from typing import Any

MAX_STARS = 5


def render_productpage(product: dict[str, Any], details_status: int, details: dict[str, Any],
                       reviews_status: int, reviews: dict[str, Any], user: str) -> str:
    return "\n".join([
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><title>Simple Bookstore App</title>',
        "<style>body{font-family:sans-serif;margin:2em}.error{color:#a94442;border:1px solid #ebccd1;"
        "background:#f2dede;padding:1em}blockquote{border-left:4px solid #ddd;padding-left:1em}</style>",
        "</head><body>",
        _user_bar(user),
        f'<h1>{escape(str(product.get("title", "")))}</h1>',
        # descriptionHtml is the catalogue's own trusted markup, shown as HTML like Istio's `|safe`.
        f'<p>Summary: {product.get("descriptionHtml", "")}</p>',
        '<div class="details">', _details(details_status, details), "</div>",
        '<div class="reviews">', _reviews(reviews_status, reviews), "</div>",
        "</body></html>",
    ])


def _user_bar(user: str) -> str:
    if user:
        return (f'<p>Signed in as <b>{escape(user)}</b> '
                '<form method="post" action="logout"><button type="submit">Sign out</button></form></p>')
    return ('<form method="post" action="login"><input name="username" placeholder="User Name">'
            '<input name="passwd" type="password" placeholder="Password"><button type="submit">Sign in</button></form>')


def _error_box(title: str, body: dict[str, Any]) -> str:
    reason = f'<p>{escape(str(body["error"]))}</p>' if body.get("error") else ""
    return f'<div class="error"><h4>{title}</h4>{reason}</div>'


def _details(status: int, details: dict[str, Any]) -> str:
    if status != 200:
        return _error_box("Error fetching product details!", details)
    rows = [("Type", "type"), ("Pages", "pages"), ("Publisher", "publisher"), ("Language", "language"),
            ("ISBN-10", "ISBN-10"), ("ISBN-13", "ISBN-13")]
    items = "".join(f"<dt>{label}:</dt><dd>{escape(str(details.get(key, '')))}</dd>" for label, key in rows)
    return f"<h4>Book Details</h4><dl>{items}</dl>"


def _reviews(status: int, reviews: dict[str, Any]) -> str:
    if status != 200:
        return _error_box("Error fetching product reviews!", reviews)
    parts = ["<h4>Book Reviews</h4>"]
    for review in reviews.get("reviews", []):
        parts.append(f'<blockquote><p>{escape(str(review.get("text", "")))}</p>'
                     f'<small>{escape(str(review.get("reviewer", "")))}</small>{_rating(review.get("rating"))}'
                     "</blockquote>")
    return "".join(parts)


def _rating(rating: object) -> str:
    if not isinstance(rating, dict):
        return ""
    stars = rating.get("stars")
    if isinstance(stars, int):
        shown = max(0, min(stars, MAX_STARS))
        color = escape(str(rating.get("color", "black")))
        return (f'<p class="stars" style="color:{color}" data-stars="{shown}">'
                f'{"★" * shown}{"☆" * (MAX_STARS - shown)}</p>')
    if rating.get("error"):
        return f'<p><i>{escape(str(rating["error"]))}</i></p>'
    return ""
