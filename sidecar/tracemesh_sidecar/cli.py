"""`tracemesh proxy`: run the sidecar proxy until SIGTERM/SIGINT, its config from a watched file
(`--config FILE`, reloaded on change and SIGHUP) or from the operator's push (`--discovery`).

SIGTERM ends it as pilot-agent ends Envoy (proxy/termination.py): inbound drains while outbound
serves the app for the drain period, spans are flushed, and it exits 0."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any, Final

from tracemesh_sidecar import BUILD
from tracemesh_sidecar.config.fields import ConfigError
from tracemesh_sidecar.config.model import ProxyType
from tracemesh_sidecar.discovery.source import DiscoveryConfigSource
from tracemesh_sidecar.proxy.file_source import FileConfigSource
from tracemesh_sidecar.proxy.runtime import ListenerError, Runtime
from tracemesh_sidecar.proxy.termination import DrainPlan, drain_plan
from tracemesh_sidecar.stats import Stats

log = logging.getLogger("tracemesh.proxy")

_GC_THRESHOLD: Final = 20_000  # new objects between the cyclic GC's young collections (see serve())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mode", nargs="?", choices=("sidecar", "router"), default="sidecar",
                        help="router: a gateway (no app, no capture; its config has proxyType router), as "
                             "Istio's `pilot-agent proxy router`; default sidecar")
    parser.add_argument("--config", metavar="FILE",
                        help="proxy config document (YAML or JSON); re-read when it changes and on SIGHUP")
    parser.add_argument("--discovery", metavar="HOST:PORT",
                        help="take configs from the operator's push (port 15010) instead of watching --config")
    parser.add_argument("--bootstrap-env", action="store_true",
                        help="with --discovery: the first config from the pod's environment (set by injection)")
    parser.add_argument("--drain-timeout", type=float, default=None, metavar="SECONDS",
                        help="on SIGTERM, how long inbound drains while outbound serves on; default: the "
                             "terminationDrainDuration of $PROXY_CONFIG (as injection sets it), else 5")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if bool(args.config) == args.bootstrap_env or (args.bootstrap_env and not args.discovery):
        print("tracemesh proxy: give --config FILE, or --discovery HOST:PORT --bootstrap-env", file=sys.stderr)
        return 2
    try:
        plan = drain_plan(os.environ)
    except ConfigError as error:
        print(f"tracemesh proxy: {error}", file=sys.stderr)
        return 2
    if args.drain_timeout is not None:
        plan = replace(plan, termination_drain_s=args.drain_timeout)
    return _run_event_loop(serve(args.config, plan, args.discovery, args.mode))


def _run_event_loop(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return int(uvloop.run(main))


async def serve(config_path: str | None, plan: DrainPlan, discovery: str | None = None,
                mode: ProxyType = "sidecar") -> int:
    log.info("sidecar build: %s", BUILD.describe())
    stats = Stats()
    runtime = Runtime(stats)
    source: FileConfigSource | DiscoveryConfigSource
    if discovery:
        source = DiscoveryConfigSource(discovery, runtime.apply, stats, config_path=config_path, proxy_type=mode)
    else:
        source = FileConfigSource(config_path or "", runtime.apply)
    try:
        config = source.load()
    except ConfigError as error:
        log.error("config %s rejected: %s", config_path or "from the environment", error)
        return 2
    if config.proxy_type != mode:
        log.error("config %s is for proxyType %s; run `tracemesh proxy %s`, or change proxyType",
                  config_path or "from the environment", config.proxy_type, config.proxy_type)
        return 2
    try:
        await runtime.apply(config)
    except ListenerError as error:
        log.error("%s", error)
        await runtime.close(0)
        return 1
    # Everything loaded so far lives as long as the process: keep the cyclic GC from re-scanning it.
    gc.freeze()
    # A request's objects are freed by their reference counts, not by the cyclic GC: a collection every 700 new
    # objects (the default) finds next to nothing and rescans what is alive, the spans waiting for export among
    # them (callgrind: ~1.5k instructions a request). Every 20,000: the client sidecar of `bench instructions`
    # peaked at the same RSS after 80,000 requests either way (55.0 and 55.1 MB).
    gc.set_threshold(_GC_THRESHOLD, *gc.get_threshold()[1:])
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, source.trigger)
    watcher = loop.create_task(source.watch())
    await stop.wait()
    log.info("shutting down")
    # The config source keeps running while draining, as pilot-agent keeps its xDS stream.
    await runtime.terminate(plan)
    watcher.cancel()
    return 0
