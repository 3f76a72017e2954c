"""The `tracemesh demo` command: flags, then start everything, exercise it, report, and stop it all."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import yaml

from tracemesh_bookinfo.trace_shape import summarize
from tracemesh_cli.demo.inputs import (
    DEFAULT_GATEWAY_ROUTES,
    DEFAULT_MESH_CONFIG,
    DEFAULT_TELEMETRY,
    InputError,
    read_mesh_spec,
    read_networking,
    read_telemetries,
)
from tracemesh_cli.demo.plan import (
    LOOPBACK,
    WORKLOADS,
    CollectorPorts,
    DemoPlan,
    GatewayPorts,
    PlanError,
    Workload,
    WorkloadPorts,
    plan_demo,
    with_provider,
)
from tracemesh_cli.demo.ports import PortError, all_listening, check_free, check_listening, pick_free
from tracemesh_cli.demo.processes import ChildFailed, Supervisor
from tracemesh_cli.demo.traffic import Found, Sent, backend_source, send_requests, wait_for_traces
from tracemesh_cli.trace_tree import render_trace
from tracemesh_sidecar.config import dump_proxy_config

STARTUP_TIMEOUT_S = 20.0
# Variables that would send the children's own traffic somewhere else; each child gets exactly what it needs.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=_positive_int, default=10, metavar="N",
                        help="requests to send to /productpage (default 10)")
    parser.add_argument("--once", action="store_true",
                        help="exit after checking the traces: 0 only if all N came back complete")
    parser.add_argument("--provider", metavar="NAME",
                        help="report to this MeshConfig provider instead of the Telemetry's (e.g. jaeger)")
    parser.add_argument("--telemetry", type=Path, default=DEFAULT_TELEMETRY, metavar="FILE",
                        help="Telemetry resources (default samples/bookinfo/telemetry.yaml)")
    parser.add_argument("--mesh-config", type=Path, default=DEFAULT_MESH_CONFIG, metavar="FILE",
                        help="the MeshConfig resource (default samples/bookinfo/meshconfig.yaml)")
    parser.add_argument("--port", type=_port, default=9080, help="productpage's port (default 9080)")
    parser.add_argument("--gateway-port", type=_port, default=8080,
                        help="the ingress gateway's port, $GATEWAY_URL (default 8080)")
    parser.add_argument("--gateway-routes", type=Path, default=DEFAULT_GATEWAY_ROUTES, metavar="FILE",
                        help="Istio Gateway and VirtualService resources for the ingress gateway "
                             "(default samples/bookinfo/networking/bookinfo-gateway.yaml)")
    parser.add_argument("--zipkin-port", type=_port, default=9411, help="the collector's Zipkin API port")
    parser.add_argument("--otlp-port", type=_port, default=4318, help="the collector's OTLP/HTTP port")
    parser.add_argument("--otlp-grpc-port", type=_port, default=4317, help="the collector's OTLP/gRPC port")
    parser.add_argument("--query-port", type=_port, default=16686, help="the collector's Jaeger query API port")
    parser.add_argument("--external-collector", action="store_true",
                        help="start no collector: use the one already on the four collector ports (e.g. "
                             "`tracemesh collector` in another terminal), whose traces outlive the demo")
    parser.add_argument("--trace-timeout", type=float, default=15.0, metavar="SECONDS",
                        help="how long to wait for the traces to arrive (default 15)")


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_demo(args))
    except (InputError, PlanError, PortError, ChildFailed) as error:
        print(f"tracemesh demo: {error}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:  # SIGTERM
        return 128 + signal.SIGTERM


async def _demo(args: argparse.Namespace) -> int:
    telemetries = read_telemetries(args.telemetry)
    mesh_spec = read_mesh_spec(args.mesh_config)
    networking = read_networking(args.gateway_routes)
    if args.provider:
        telemetries, mesh_spec = with_provider(telemetries, mesh_spec, args.provider)
    collector_ports = {"--zipkin-port": (args.zipkin_port, "the Zipkin API"),
                       "--otlp-port": (args.otlp_port, "OTLP/HTTP"),
                       "--otlp-grpc-port": (args.otlp_grpc_port, "OTLP/gRPC"),
                       "--query-port": (args.query_port, "the Jaeger API")}
    # A collector already on all four ports (`tracemesh collector` in another terminal) is used
    # as is, so that its traces outlive a `--once` run.
    external = args.external_collector or await all_listening(collector_ports)
    check_free({"--port": (args.port, "productpage"), "--gateway-port": (args.gateway_port, "the ingress gateway"),
                **({} if external else collector_ports)})
    if external:
        await check_listening(collector_ports, "start `tracemesh collector` first, or drop --external-collector")
        print(f"using the collector already listening on 127.0.0.1:{args.zipkin_port} (Zipkin API), "
              f":{args.otlp_port} (OTLP/HTTP), :{args.otlp_grpc_port} (OTLP/gRPC) and :{args.query_port} (Jaeger API)",
              flush=True)
    workload_ports, collector, gateway_ports = _ports(args)
    plan = plan_demo(mesh_spec, telemetries, workload_ports, collector, networking, gateway_ports)
    if args.once and plan.sampling_percentage < 100:
        raise PlanError(f"the Telemetry samples {plan.sampling_percentage:g}% of requests, so --once cannot expect "
                        "a trace for every request; set randomSamplingPercentage: 100")
    current = asyncio.current_task()
    if current is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, current.cancel)
    work_dir = Path(tempfile.mkdtemp(prefix="tracemesh-demo-"))
    supervisor = Supervisor(work_dir)
    succeeded = False
    try:
        await _start(plan, supervisor, work_dir, start_collector=not external)
        _print_banner(plan, work_dir)
        succeeded = await _exercise(plan, args.requests, args.trace_timeout, supervisor)
        if args.once:
            return 0 if succeeded else 1
        print("\nRunning; press Ctrl-C to stop.", flush=True)
        while True:
            await asyncio.sleep(1.0)
            supervisor.check_alive()
    except asyncio.CancelledError:  # Ctrl-C or SIGTERM
        print("\ntracemesh demo: stopping", flush=True)
        raise
    finally:
        supervisor.stop_all()
        if succeeded:
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            print(f"tracemesh demo: logs and proxy configs kept in {work_dir}", file=sys.stderr)


def _ports(args: argparse.Namespace) -> tuple[dict[Workload, WorkloadPorts], CollectorPorts, GatewayPorts]:
    """The user's fixed ports (0: any) and kernel-chosen ones for everything internal."""
    fixed = {args.port, args.gateway_port, args.zipkin_port, args.otlp_port, args.query_port,
             args.otlp_grpc_port} - {0}
    free = iter(pick_free(4 * len(WORKLOADS) + 6, exclude=fixed))
    collector = CollectorPorts(zipkin=args.zipkin_port or next(free), otlp=args.otlp_port or next(free),
                               query=args.query_port or next(free), otlp_grpc=args.otlp_grpc_port or next(free))
    ports = {}
    for workload in WORKLOADS:
        inbound = (args.port or next(free)) if workload.service == "productpage" else next(free)
        ports[workload] = WorkloadPorts(app=next(free), inbound=inbound, outbound=next(free), admin=next(free))
    return ports, collector, GatewayPorts(listen=args.gateway_port or next(free), admin=next(free))


def _child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key.lower() not in PROXY_VARIABLES}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


async def _start(plan: DemoPlan, supervisor: Supervisor, work_dir: Path, *, start_collector: bool) -> None:
    """Starts the collector and every workload with its sidecar; returns when all of them listen."""
    python = [sys.executable, "-m"]
    ports = plan.collector
    waits = []
    if start_collector:
        collector = supervisor.start("collector", [
            *python, "tracemesh_cli.main", "collector", "--host", LOOPBACK, "--zipkin-port", str(ports.zipkin),
            "--otlp-port", str(ports.otlp), "--query-port", str(ports.query), "--otlp-grpc-port", str(ports.otlp_grpc)],
            _child_environment({}))
        waits.append(supervisor.wait_listening(collector, [ports.zipkin, ports.otlp, ports.query, ports.otlp_grpc],
                                               STARTUP_TIMEOUT_S))
    for workload in plan.workloads:
        config_path = work_dir / f"{workload.workload.name}-proxy.yaml"
        config_path.write_text(yaml.safe_dump(dump_proxy_config(workload.proxy_config), sort_keys=False))
        sidecar = supervisor.start(f"{workload.workload.name}-sidecar", [
            *python, "tracemesh_cli.main", "proxy", "--config", str(config_path)], _child_environment({}))
        app = supervisor.start(workload.workload.name, [*python, "tracemesh_bookinfo", workload.workload.service],
                               _child_environment(workload.app_environment()))
        waits.append(supervisor.wait_listening(
            sidecar, [workload.ports.inbound, workload.ports.outbound], STARTUP_TIMEOUT_S))
        waits.append(supervisor.wait_listening(app, [workload.ports.app], STARTUP_TIMEOUT_S))
    config_path = work_dir / "istio-ingressgateway-proxy.yaml"
    config_path.write_text(yaml.safe_dump(dump_proxy_config(plan.gateway.proxy_config), sort_keys=False))
    gateway = supervisor.start("istio-ingressgateway", [
        *python, "tracemesh_cli.main", "proxy", "router", "--config", str(config_path)], _child_environment({}))
    waits.append(supervisor.wait_listening(gateway, [plan.gateway.ports.listen], STARTUP_TIMEOUT_S))
    await asyncio.gather(*waits)


def _print_banner(plan: DemoPlan, work_dir: Path) -> None:
    provider = plan.provider
    print(f"tracemesh demo: Bookinfo with {len(plan.workloads)} sidecars, tracing to provider {provider.name!r} "
          f"({provider.kind}, {provider.url}) at {plan.sampling_percentage:g}% sampling")
    for workload in plan.workloads:
        ports = workload.ports
        print(f"  {workload.workload.name:<15} app :{ports.app:<6} sidecar inbound :{ports.inbound:<6} "
              f"outbound :{ports.outbound:<6} admin http://{LOOPBACK}:{ports.admin}/config_dump")
        print(f"  {'':<15} metrics {metrics_url(ports.admin)}")
    gateway = plan.gateway
    print(f"  {'istio-ingressgateway':<15} listens :{gateway.ports.listen:<6} "
          f"admin http://{LOOPBACK}:{gateway.ports.admin}/config_dump")
    print(f"  {'':<15} metrics {metrics_url(gateway.ports.admin)}")
    print(f"  logs and proxy configs in {work_dir}")
    print(f"\nGATEWAY_URL={gateway.url}\n  curl http://{gateway.url}/productpage", flush=True)


def metrics_url(admin_port: int) -> str:
    """Where a local sidecar serves Istio's standard metrics: its admin port's /stats/prometheus, as Envoy's admin
    does (in a cluster Prometheus scrapes the pod's 15090, which local mode does not open: one port per sidecar)."""
    return f"http://{LOOPBACK}:{admin_port}/stats/prometheus"


def _backend_urls(plan: DemoPlan) -> tuple[str, str]:
    return f"http://{LOOPBACK}:{plan.collector.zipkin}", f"http://{LOOPBACK}:{plan.collector.query}"


async def _exercise(plan: DemoPlan, count: int, timeout_s: float, supervisor: Supervisor) -> bool:
    """Sends the requests, waits for their traces, prints the verdict and the newest trace; True if all is well."""
    started_at = time.time()
    sent = await send_requests(plan.entry_url, count)
    statuses = Counter(item.status for item in sent)
    print(f"\nsent {count} requests to {plan.entry_url}: "
          + ", ".join(f"{number} x {status or 'no response'}" for status, number in sorted(statuses.items())))
    zipkin_url, query_url = _backend_urls(plan)
    # Read back through the API of the backend the provider stands for: Zipkin's, or Jaeger's for OTLP.
    if plan.provider.kind == "zipkin":
        source, read_from = backend_source(zipkin_url, "zipkin"), f"the Zipkin API at {zipkin_url}"
    else:
        source, read_from = backend_source(query_url, "jaeger"), f"the Jaeger query API at {query_url}"
    found = await wait_for_traces(source, sent, started_at, timeout_s)
    supervisor.check_alive()
    complete = [trace for trace in found.values() if trace is not None and trace.shape.complete]
    versions = ", ".join(f"{version}: {number}" for version, number in
                         summarize([trace.shape for trace in complete]).items())
    print(f"traces: {len(complete)}/{count} complete (reviews {versions or 'none'}), read from {read_from}")
    _print_problems(sent, found)
    newest = next((trace for trace in reversed(list(found.values())) if trace is not None), None)
    if newest is not None:
        print(f"\nthe newest trace (reviews {newest.shape.reviews_version or '?'}):\n{render_trace(newest.spans)}")
    print(f"\nbrowse the traces:\n  trace UI    {zipkin_url}/zipkin/ (also {query_url}/)\n"
          f"  Zipkin API  {zipkin_url}/api/v2/traces?serviceName=productpage.default\n"
          f"  Jaeger API  {query_url}/api/traces?service=productpage.default", flush=True)
    return len(complete) == count and statuses == Counter({200: count})


def _print_problems(sent: list[Sent], found: Mapping[str, Found | None], shown: int = 5) -> None:
    failures = [(item, found.get(item.request_id)) for item in sent]
    failures = [(item, trace) for item, trace in failures
                if item.status != 200 or trace is None or not trace.shape.complete]
    for item, trace in failures[:shown]:
        if trace is None:
            print(f"  request {item.request_id} (HTTP {item.status or 'no response'}): no trace arrived")
        else:
            print(f"  request {item.request_id} (HTTP {item.status}), trace {trace.shape.trace_id}:")
            for problem in trace.shape.problems:
                print(f"    - {problem}")
    if len(failures) > shown:
        print(f"  ... and {len(failures) - shown} more requests with problems")


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535; 0 picks a free one)")
    return int(text)
