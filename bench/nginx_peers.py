"""nginx as the origin server, the span sink and the reference proxy pair."""

from __future__ import annotations

import shutil
from pathlib import Path

BODY_1K = "x" * 1024

_COMMON = """
worker_processes 1;
daemon off;
error_log stderr error;
pid {tmp}/nginx-{name}.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body-{name};
    proxy_temp_path {tmp}/proxy-{name};
    keepalive_requests 1000000;
{body}
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        raise RuntimeError("nginx is not installed: apt-get install nginx-light (the benchmark's reference peer)")
    return found


def origin_conf(tmp: Path, port: int) -> Path:
    """A 1 KB response for every request, and a 202 sink standing in for the span collector."""
    body = f"""
    server {{
        listen 127.0.0.1:{port} reuseport;
        location /api/v2/spans {{ return 202; }}
        location /v1/traces {{ return 200; }}
        location / {{ default_type text/plain; return 200 "{BODY_1K}"; }}
    }}"""
    return _write(tmp, "origin", body)


def proxy_conf(tmp: Path, name: str, listen_port: int, upstream_port: int) -> Path:
    """A reverse proxy with upstream keep-alive: the usual way to put nginx in a request path."""
    body = f"""
    upstream next {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{listen_port};
        location / {{
            proxy_pass http://next;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering on;
        }}
    }}"""
    return _write(tmp, name, body)


def h2c_origin_conf(tmp: Path, port: int, sink_port: int) -> Path:
    """The 1 KB response over h2c with prior knowledge, after reading the request body; the span sink over HTTP/1.1
    on a port of its own (nginx before 1.25.1, Debian bookworm's 1.22, refuses HTTP/1.1 on an h2c port).

    `return 200` would answer before the body arrives: nginx then skips the stream's DATA as unread, and its HTTP/2
    flood check (src/http/v2/ngx_http_v2.c, ngx_http_v2_read_handler: received bytes / 8 > payload bytes + 1 MB)
    closes the connection after some 13,000 such POSTs. So `mirror_request_body` reads the body (precontent phase),
    the content phase finds no file (404, not logged) and `error_page` answers from `@respond` instead, 200."""
    body = f"""
    server {{
        listen 127.0.0.1:{port} http2;
        location / {{
            mirror /read-body;
            mirror_request_body on;
            root /nonexistent;
            log_not_found off;
            error_page 404 =200 @respond;
        }}
        location = /read-body {{ internal; return 204; }}
        location @respond {{ default_type text/plain; return 200 "{BODY_1K}"; }}
    }}
    server {{
        listen 127.0.0.1:{sink_port};
        location /api/v2/spans {{ return 202; }}
    }}"""
    return _write(tmp, "h2c-origin", body)


def grpc_proxy_conf(tmp: Path, name: str, listen_port: int, upstream_port: int) -> Path:
    """An HTTP/2 reverse proxy: h2c in, HTTP/2 out with `grpc_pass`, nginx's one HTTP/2 upstream (`proxy_pass`
    speaks HTTP/1.x only). nginx carries one stream per upstream connection, kept alive: it does not multiplex."""
    body = f"""
    upstream next {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{listen_port} http2;
        location / {{
            grpc_pass grpc://next;
            grpc_set_header Host $host;
        }}
    }}"""
    return _write(tmp, name, body)


def _write(tmp: Path, name: str, body: str) -> Path:
    path = tmp / f"nginx-{name}.conf"
    path.write_text(_COMMON.format(tmp=tmp, name=name, body=body))
    return path


def argv(conf: Path) -> list[str]:
    return [nginx_binary(), "-c", str(conf), "-p", str(conf.parent)]
