"""The one entry every Bookinfo service runs through: `python -m tracemesh_bookinfo SERVICE`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from aiohttp import web

from tracemesh_bookinfo import details, productpage, ratings, reviews
from tracemesh_bookinfo.settings import Settings, SettingsError, settings_from_env

SERVICES: dict[str, Callable[[Settings], web.Application]] = {
    "productpage": productpage.make_app,
    "details": details.make_app,
    "reviews": reviews.make_app,
    "ratings": ratings.make_app,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tracemesh_bookinfo",
                                     description="run one Bookinfo service (listens on $PORT, default 9080)")
    # The images set BOOKINFO_SERVICE: one Dockerfile builds all four (`--build-arg SERVICE=...`).
    parser.add_argument("service", nargs="?", choices=sorted(SERVICES),
                        default=os.environ.get("BOOKINFO_SERVICE") or None,
                        help="the service to run (default: $BOOKINFO_SERVICE)")
    args = parser.parse_args(argv)
    if args.service is None:
        parser.error(f"name the service ({', '.join(sorted(SERVICES))}) or set BOOKINFO_SERVICE")
    try:
        settings = settings_from_env(os.environ)
    except SettingsError as error:
        print(f"{args.service}: {error}", file=sys.stderr)
        return 2
    app = SERVICES[args.service](settings)
    version = f" {settings.version}" if args.service == "reviews" else ""
    print(f"{args.service}{version} listening on {settings.bind_address}:{settings.port}", flush=True)
    try:
        web.run_app(app, host=settings.bind_address, port=settings.port, access_log=None, print=None,
                    shutdown_timeout=5.0)
    except OSError as error:
        print(f"{args.service}: cannot listen on {settings.bind_address}:{settings.port}: {error.strerror}; "
              "set PORT to a free port", file=sys.stderr)
        return 1
    return 0
