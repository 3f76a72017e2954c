"""Turning the authority a client called into the service FQDN that names spans and clusters."""

from __future__ import annotations

import ipaddress


def normalize_host(authority: str, namespace: str, cluster_domain: str) -> tuple[str, int | None]:
    """`reviews:9080` in namespace default -> ("reviews.default.svc.cluster.local", 9080).

    Short names resolve the way a pod's DNS search path does: `name` -> `name.{namespace}.svc.
    {domain}`, `name.ns` and `name.ns.svc` -> `... .svc.{domain}`. Names with three or more labels
    and IP addresses are returned as they are (lowercased, bare IPv6 without brackets). A port that
    is not a number in 1-65535 is reported as None; nothing here raises.
    """
    host, port = _split_port(authority.strip())
    host = host.lower().rstrip(".")
    if not host or _is_ip(host):
        return host, port
    suffix = f".svc.{cluster_domain}"
    if host.endswith(suffix) or host.endswith(f".{cluster_domain}"):
        return host, port
    labels = host.count(".")
    if labels == 0:
        return f"{host}.{namespace}{suffix}", port
    if labels == 1:
        return f"{host}{suffix}", port
    if labels == 2 and host.endswith(".svc"):
        return f"{host}.{cluster_domain}", port
    return host, port


def _split_port(authority: str) -> tuple[str, int | None]:
    # By hand rather than urllib.parse: that needs a scheme, and raises on a bad port where this
    # function must answer (it runs on whatever Host header a client sent).
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        return host, _port(rest[1:]) if rest.startswith(":") else None
    if authority.count(":") > 1:  # a bare IPv6 address has no port
        return authority, None
    host, sep, port = authority.partition(":")
    return host, _port(port) if sep else None


def _port(text: str) -> int | None:
    if not text.isdigit() or not text.isascii():
        return None
    value = int(text)
    return value if 0 < value < 65536 else None


def _is_ip(host: str) -> bool:
    # Cheap pre-check first (this runs per request): IPv4 ends in a digit, IPv6 holds a colon,
    # while most service names end in a letter and never reach the slow, raising parser.
    if not (host[-1].isdigit() or ":" in host):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
