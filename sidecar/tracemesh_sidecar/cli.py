"""`tracemesh proxy`: run the sidecar proxy until SIGTERM/SIGINT (drained), its config from a watched
file (`--config FILE`, reloaded on change and SIGHUP) or from the operator's push (`--discovery`)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from tracemesh_sidecar.config.fields import ConfigError
from tracemesh_sidecar.discovery.source import DiscoveryConfigSource
from tracemesh_sidecar.proxy.file_source import FileConfigSource
from tracemesh_sidecar.proxy.runtime import ListenerError, Runtime
from tracemesh_sidecar.stats import Stats

log = logging.getLogger("tracemesh.proxy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="proxy config document (YAML or JSON); re-read when it changes and on SIGHUP")
    parser.add_argument("--discovery", metavar="HOST:PORT",
                        help="take configs from the operator's push (port 15010) instead of watching --config")
    parser.add_argument("--bootstrap-env", action="store_true",
                        help="with --discovery: the first config from the pod's environment (set by injection)")
    parser.add_argument("--drain-timeout", type=float, default=5.0, metavar="SECONDS",
                        help="on SIGTERM, how long responses in progress may take to finish (default 5)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if bool(args.config) == args.bootstrap_env or (args.bootstrap_env and not args.discovery):
        print("tracemesh proxy: give --config FILE, or --discovery HOST:PORT --bootstrap-env", file=sys.stderr)
        return 2
    return _run_event_loop(serve(args.config, args.drain_timeout, args.discovery))


def _run_event_loop(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return int(uvloop.run(main))


async def serve(config_path: str | None, drain_timeout_s: float, discovery: str | None = None) -> int:
    stats = Stats()
    runtime = Runtime(stats)
    source: FileConfigSource | DiscoveryConfigSource
    if discovery:
        source = DiscoveryConfigSource(discovery, runtime.apply, stats, config_path=config_path)
    else:
        source = FileConfigSource(config_path or "", runtime.apply)
    try:
        config = source.load()
    except ConfigError as error:
        log.error("config %s rejected: %s", config_path or "from the environment", error)
        return 2
    try:
        await runtime.apply(config)
    except ListenerError as error:
        log.error("%s", error)
        await runtime.close(0)
        return 1
    # Everything loaded so far lives as long as the process: keep the cyclic GC from re-scanning it.
    gc.freeze()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, source.trigger)
    watcher = loop.create_task(source.watch())
    await stop.wait()
    log.info("shutting down: draining connections (up to %gs)", drain_timeout_s)
    watcher.cancel()
    await runtime.close(drain_timeout_s)
    return 0
