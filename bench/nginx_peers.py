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


def _write(tmp: Path, name: str, body: str) -> Path:
    path = tmp / f"nginx-{name}.conf"
    path.write_text(_COMMON.format(tmp=tmp, name=name, body=body))
    return path


def argv(conf: Path) -> list[str]:
    return [nginx_binary(), "-c", str(conf), "-p", str(conf.parent)]
