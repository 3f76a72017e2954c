"""`tracemesh traces --service productpage.default`: print recent traces from a Zipkin-API or Jaeger-API backend."""

from __future__ import annotations

import argparse
import asyncio
import sys

from tracemesh_cli.backend_client import APIS, BackendError, TraceSearch, fetch_traces
from tracemesh_cli.trace_tree import render_trace
from tracemesh_sidecar.durations import parse_duration_us

DEFAULT_BACKEND = "http://127.0.0.1:9411"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", required=True,
                        help="service name as the spans carry it, e.g. productpage.default")
    parser.add_argument("--backend", default=DEFAULT_BACKEND,
                        help=f"Zipkin or Jaeger query URL (default {DEFAULT_BACKEND}; e.g. http://127.0.0.1:16686)")
    parser.add_argument("--api", choices=APIS, default="auto",
                        help="which query API the backend speaks (default: detect)")
    parser.add_argument("--limit", type=_positive, default=5, help="at most this many traces, newest first (default 5)")
    parser.add_argument("--lookback", type=_duration, default="1h",
                        help="how far back to look, e.g. 15m, 1h, 2d (default 1h)")
    parser.add_argument("--span-name", help="only traces with a span of this name")


def run(args: argparse.Namespace) -> int:
    search = TraceSearch(service=args.service, limit=args.limit, lookback_us=parse_duration_us(args.lookback),
                         span_name=args.span_name)
    try:
        traces = asyncio.run(fetch_traces(args.backend, search, api=args.api))
    except BackendError as error:
        print(f"tracemesh traces: {error}", file=sys.stderr)
        return 1
    if not traces:
        print(f"no traces of service {args.service!r} in the last {args.lookback} at {args.backend} "
              "(see its /api/v2/services or /api/services for the names it knows)")
        return 0
    print("\n\n".join(render_trace(spans) for spans in traces))
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _duration(text: str) -> str:
    try:
        value = parse_duration_us(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be longer than zero, got {text!r}")
    return text
