"""`tracemesh collector` run as a separate process on ephemeral ports, for tests that restart it or read its RSS."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

COMMAND = [sys.executable, "-m", "tracemesh_cli.main", "collector"]
EPHEMERAL = ["--zipkin-port", "0", "--otlp-port", "0", "--query-port", "0", "--otlp-grpc-port", "0"]


@dataclass
class CollectorProcess:
    pid: int
    urls: dict[str, str]  # "Zipkin", "OTLP/HTTP", "Jaeger" -> base URL
    banner: str

    def rss_bytes(self) -> int:
        """Resident set size, from /proc."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS for process {self.pid}")


@asynccontextmanager
async def collector_process(*options: str) -> AsyncIterator[CollectorProcess]:
    """The collector with `options`, stopped with SIGTERM (and required to exit 0) when the block ends."""
    process = await asyncio.create_subprocess_exec(*COMMAND, *EPHEMERAL, *options, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    try:
        lines = [(await asyncio.wait_for(process.stdout.readline(), 30)).decode() for _ in range(5)]
        urls = {line.split()[0]: url for line in lines[1:] for url in re.findall(r"http://127\.0\.0\.1:\d+", line)}
        yield CollectorProcess(process.pid, urls, "".join(lines))
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, errors = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, errors.decode()
