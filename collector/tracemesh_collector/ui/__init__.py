"""The trace UI: static files (plain ES modules and SVG, no build step) and the routes that serve them."""
