"""`tracemesh collector`: run the embedded collector until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys

from tracemesh_collector.server import (
    OTLP_GRPC_PORT,
    OTLP_PORT,
    QUERY_PORT,
    ZIPKIN_PORT,
    ListenError,
    run_collector,
)
from tracemesh_collector.sqlite_archive import StorageError, open_sqlite_store, parse_storage
from tracemesh_collector.store import DEFAULT_MAX_BYTES, DEFAULT_MAX_SPANS, SpanStore

_BYTE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
# A collector holds a few long-lived objects per stored span, and with CPython's default thresholds (700, 10, 10)
# a full collection traverses all of them each time the heap grows by a quarter: timed with gc.callbacks over
# 300 000 Zipkin spans posted to `tracemesh collector`, 1.24 of its 5.7 CPU-seconds (9 full collections), against
# 0.49 s (1) with these. Young cycles are still collected within 10 000 allocations, and a full collection still
# comes after at most 10 x 10 x 10 000 net allocations once the heap has grown by a quarter.
GC_THRESHOLDS = (10_000, 10, 10)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 inside a pod)")
    parser.add_argument("--zipkin-port", type=_port, default=ZIPKIN_PORT,
                        help=f"Zipkin v2 ingest and query API (default {ZIPKIN_PORT}; 0 picks a free port)")
    parser.add_argument("--otlp-port", type=_port, default=OTLP_PORT,
                        help=f"OTLP/HTTP ingest, POST /v1/traces (default {OTLP_PORT})")
    parser.add_argument("--otlp-grpc-port", type=_port, default=OTLP_GRPC_PORT,
                        help=f"OTLP/gRPC ingest, TraceService/Export (default {OTLP_GRPC_PORT})")
    parser.add_argument("--otlp-grpc-auth-port", type=_port, default=None,
                        help="a second OTLP/gRPC receiver that takes only calls with 'authorization: Bearer "
                             "<token>' (off unless given; the token from --bearer-token)")
    parser.add_argument("--bearer-token", default=None,
                        help="the token --otlp-grpc-auth-port requires (as the OpenTelemetry Collector's "
                             "bearertokenauth extension)")
    parser.add_argument("--query-port", type=_port, default=QUERY_PORT,
                        help=f"Jaeger query API, /api/traces (default {QUERY_PORT})")
    parser.add_argument("--max-spans", type=_positive, default=DEFAULT_MAX_SPANS,
                        help=f"spans kept in memory; beyond it the oldest traces go (default {DEFAULT_MAX_SPANS})")
    parser.add_argument("--max-bytes", type=_byte_size, default=DEFAULT_MAX_BYTES,
                        help="memory the kept spans may take, e.g. 512M or 2G; beyond it the oldest traces go "
                             f"(default {DEFAULT_MAX_BYTES // 1024**2}M)")
    parser.add_argument("--storage", default="memory",
                        help="'memory' (default: a restart forgets every span) or 'sqlite:PATH' (spans are also "
                             "written to that SQLite file and loaded back at start, so a restart loses nothing)")


def run(args: argparse.Namespace) -> int:
    gc.set_threshold(*GC_THRESHOLDS)
    if (args.otlp_grpc_auth_port is None) != (args.bearer_token is None):
        print("tracemesh collector: --otlp-grpc-auth-port and --bearer-token go together: give both or neither",
              file=sys.stderr)
        return 2
    try:
        path = parse_storage(args.storage)
        if path is None:
            return asyncio.run(_serve(args, SpanStore(args.max_spans, args.max_bytes), "in memory"))
        store, archive = open_sqlite_store(path, args.max_spans, args.max_bytes)
        try:
            return asyncio.run(_serve(args, store, f"in memory and in {path} ({store.span_count} loaded)"))
        finally:
            archive.close()
    except (ListenError, StorageError) as error:
        print(f"tracemesh collector: {error.strerror if isinstance(error, ListenError) else error}", file=sys.stderr)
        return 1


async def _serve(args: argparse.Namespace, store: SpanStore, where: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with run_collector(args.host, args.zipkin_port, args.otlp_port, args.query_port, args.max_spans,
                             otlp_grpc_port=args.otlp_grpc_port,
                             otlp_grpc_auth=None if args.bearer_token is None
                             else (args.otlp_grpc_auth_port, args.bearer_token), store=store) as c:
        print(f"tracemesh collector on {args.host}, keeping up to {args.max_spans} spans "
              f"({args.max_bytes // 1024**2} MiB) {where}", flush=True)
        print(f"  Zipkin v2 API     {c.zipkin_url}  (POST /api/v2/spans, GET /api/v2/traces?serviceName=...)")
        print(f"  OTLP/HTTP ingest  {c.otlp_url}/v1/traces")
        print(f"  OTLP/gRPC ingest  {c.otlp_grpc_target}  (opentelemetry.proto.collector.trace.v1.TraceService/Export)")
        if c.otlp_grpc_auth_target is not None:
            print(f"  OTLP/gRPC ingest  {c.otlp_grpc_auth_target}  (bearer token required)")
        print(f"  Jaeger query API  {c.query_url}  (GET /api/traces?service=...)")
        print(f"  trace UI          {c.zipkin_url}/zipkin/ and {c.query_url}/", flush=True)
        await stop.wait()
    print("tracemesh collector: stopped", flush=True)
    return 0


def _port(text: str) -> int:
    value = _integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port 0-65535, got {text!r}")
    return value


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _byte_size(text: str) -> int:
    number, unit = text[:-1], text[-1:].upper()
    if unit not in _BYTE_UNITS or unit == "":
        number, unit = text, ""
    value = _integer(number) * _BYTE_UNITS[unit]
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive size like 256M, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
