"""`tracemesh demo`: Bookinfo on this machine, each workload behind its own sidecar, tracing to a local collector.

Starts the collector, the six Bookinfo workloads (productpage, details, ratings, reviews v1/v2/v3)
and a sidecar for each, sends requests to productpage through its sidecar, prints the newest
trace as a tree, and keeps running until Ctrl-C. With `--once` it exits instead: 0 only if every
request's trace came back complete.

plan (pure) works out every process and proxy config; ports, processes, traffic and sources are
the I/O around it; cli ties them together.
"""

from tracemesh_cli.demo.cli import add_arguments, run

__all__ = ["add_arguments", "run"]
