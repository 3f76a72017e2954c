"""Plain applications for netns pods, knowing nothing of the mesh (stdlib only).

    python netns_apps.py echo PORT            TCP: on the client's first bytes, sends `peer=<ip>`,
                                              then echoes everything back
    python netns_apps.py send HOST PORT       TCP client: sends binary bytes, half-closes, prints
                                              the peer line and whether the echo came back intact
    python netns_apps.py http PORT [--no-propagate]
        GET /call?url=U[&header=NAME:VALUE...]
                          calls U and answers with its status and body, copying the trace
                          headers of the inbound request (unless --no-propagate) and adding
                          the given headers (like the `Headers` of Istio's echo ForwardEcho call)
        GET /slow?delay=S answers after S seconds
        GET /anything     answers {"peer": <client ip>, "headers": {...}}
    python netns_apps.py caller PORT URL LINGER
                          the `http` app, and a loop calling URL on one keep-alive connection (a new one
                          when the server closes it) every 20 ms, printing each call as a JSON line {"start", "end"
                          (wall clock), "status" or "error"}; on SIGTERM it calls on for LINGER seconds
                          (an app finishing its work) and exits
    python netns_apps.py jaeger-call URL COLLECTOR
                          a Jaeger-instrumented client: makes its own trace and span ids, calls URL with
                          `uber-trace-id: {trace}:{span}:0:1`, reports its own CLIENT span (service
                          `jaeger-client`) to COLLECTOR (a Zipkin v2 spans URL), prints {"trace_id", "span_id",
                          "status", "headers" (the response's), "body"} as JSON
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import signal
import socket
import socketserver
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRACE_HEADERS = ("x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled",
                 "x-b3-flags", "b3", "traceparent", "tracestate")


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        # The client speaks first, as in HTTP: this app checks that bytes pass intact, not how
        # the proxy copes with protocols where the server greets first.
        with contextlib.suppress(ConnectionError):
            first = self.request.recv(65536)
            self.request.sendall(f"peer={self.client_address[0]}\n".encode() + first)
            while data := self.request.recv(65536):
                self.request.sendall(data)


class App(BaseHTTPRequestHandler):
    propagate = True
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/call":
            query = urllib.parse.parse_qs(url.query)
            target = query["url"][0]
            headers = {name: value for name in TRACE_HEADERS if self.propagate and (value := self.headers.get(name))}
            headers.update(entry.split(":", 1) for entry in query.get("header", ()))
            try:
                with urllib.request.urlopen(urllib.request.Request(target, headers=headers), timeout=10) as response:
                    status, body = response.status, response.read()
            except urllib.error.HTTPError as error:
                status, body = error.code, error.read()
            self._answer(200, {"status": status, "body": body.decode(errors="replace")})
        elif url.path == "/slow":
            time.sleep(float(urllib.parse.parse_qs(url.query)["delay"][0]))
            self._answer(200, {"slow": True})
        else:
            headers = {name.lower(): value for name, value in self.headers.items()}
            self._answer(200, {"peer": self.client_address[0], "headers": headers})

    def _answer(self, status: int, document: object) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


PAYLOAD = bytes(range(256)) * 64 + b"\r\n\r\nnot HTTP at all"


def send(host: str, port: int) -> None:
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(PAYLOAD)
        conn.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    peer, _, echoed = received.partition(b"\n")
    print(peer.decode(), echoed == PAYLOAD, len(received))


def call_in_a_loop(url: str, stop: threading.Event) -> None:
    target = urllib.parse.urlsplit(url)
    conn: http.client.HTTPConnection | None = None
    while not stop.is_set():
        record: dict[str, object] = {"start": time.time()}
        try:
            if conn is None:
                conn = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=10)
            conn.request("GET", target.path or "/")
            response = conn.getresponse()
            response.read()
            record["status"] = response.status
            if response.will_close:
                conn.close()
                conn = None
        except OSError as error:  # refused, reset, timed out: what the app would see
            record["error"] = repr(error)
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.05)
        record["end"] = time.time()
        print(json.dumps(record), flush=True)
        stop.wait(0.02)  # steady load, not a flood
    if conn is not None:
        conn.close()


def caller(port: int, url: str, linger_s: float) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: threading.Timer(linger_s, stop.set).start())
    server = ThreadingHTTPServer(("0.0.0.0", port), App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    call_in_a_loop(url, stop)


def jaeger_call(url: str, collector: str) -> None:
    trace_id, span_id = f"{random.getrandbits(128) | 1 << 127:032x}", f"{random.getrandbits(64) | 1 << 63:016x}"
    start = time.time()
    request = urllib.request.Request(url, headers={"uber-trace-id": f"{trace_id}:{span_id}:0:1"})
    with urllib.request.urlopen(request, timeout=10) as response:
        status, headers, body = response.status, dict(response.headers.items()), response.read()
    duration_us = max(int((time.time() - start) * 1e6), 1)
    span = {"traceId": trace_id, "id": span_id, "kind": "CLIENT", "name": "GET", "timestamp": int(start * 1e6),
            "duration": duration_us, "localEndpoint": {"serviceName": "jaeger-client"},
            "tags": {"http.url": url, "http.status_code": str(status)}}
    report = urllib.request.Request(collector, data=json.dumps([span]).encode(), method="POST",
                                    headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(report, timeout=10) as reported:
        reported.read()
    print(json.dumps({"trace_id": trace_id, "span_id": span_id, "status": status,
                      "headers": {name.lower(): value for name, value in headers.items()},
                      "body": body.decode(errors="replace")}))


def main(argv: list[str]) -> None:
    if argv[0] == "jaeger-call":
        jaeger_call(argv[1], argv[2])
        return
    if argv[0] == "send":
        send(argv[1], int(argv[2]))
        return
    if argv[0] == "caller":
        caller(int(argv[1]), argv[2], float(argv[3]))
        return
    kind, port = argv[0], int(argv[1])
    if kind == "echo":
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        socketserver.ThreadingTCPServer(("0.0.0.0", port), Echo).serve_forever()
    App.propagate = "--no-propagate" not in argv
    ThreadingHTTPServer(("0.0.0.0", port), App).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
