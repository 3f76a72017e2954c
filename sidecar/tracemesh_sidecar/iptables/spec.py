"""What the capture rules must do for one pod, read from the init container's flags.

The flags are the pod annotations Istio users already write
(`traffic.sidecar.istio.io/includeInboundPorts`, `excludeInboundPorts`, `excludeOutboundPorts`,
`excludeOutboundIPRanges`), passed through unchanged by injection: comma-separated lists,
`*` meaning every port.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TypeVar

from tracemesh_sidecar.config import ConfigError

PROXY_UID = 1337
INBOUND_CAPTURE_PORT = 15006
OUTBOUND_CAPTURE_PORT = 15001
# The proxy's own ports that callers outside the pod must reach directly: merged Prometheus
# (15020, Istio's agent port, kept free for parity), health (15021) and Prometheus (15090).
# The admin port 15000 listens on 127.0.0.1 only, so no outside traffic can reach it.
ALWAYS_EXCLUDED_INBOUND_PORTS = (15020, 15021, 15090)
ALL_PORTS = "*"
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class CaptureSpec:
    proxy_uid: int = PROXY_UID
    inbound_capture_port: int = INBOUND_CAPTURE_PORT
    outbound_capture_port: int = OUTBOUND_CAPTURE_PORT
    inbound_ports: tuple[int, ...] | None = None  # None: every port (`*`)
    exclude_inbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = ()
    exclude_outbound_ip_ranges: tuple[str, ...] = ()  # normalised IPv4 CIDRs

    @property
    def excluded_inbound(self) -> tuple[int, ...]:
        """The user's exclusions plus the proxy's own ports, each once, in order."""
        return _unique(ALWAYS_EXCLUDED_INBOUND_PORTS + self.exclude_inbound_ports)

    @property
    def captured_inbound(self) -> tuple[int, ...] | None:
        """The listed inbound ports minus the excluded ones; None when every port is captured."""
        if self.inbound_ports is None:
            return None
        excluded = set(self.excluded_inbound)
        return tuple(port for port in self.inbound_ports if port not in excluded)

    def __post_init__(self) -> None:
        check_uid(self.proxy_uid, "--proxy-uid")
        check_port(self.inbound_capture_port, "--inbound-capture-port")
        check_port(self.outbound_capture_port, "--outbound-capture-port")


def parse_ports(text: str, flag: str) -> tuple[int, ...]:
    """`9080, 9090` -> (9080, 9090); empty -> (). Duplicates are dropped, order is kept."""
    ports = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if not item.isdigit() or not 0 < int(item) < 65536:
            raise ConfigError(flag, f"has {item!r}, which is not a port",
                              "write ports from 1 to 65535 separated by commas, e.g. 9080,9090")
        ports.append(int(item))
    return _unique(tuple(ports))


def parse_inbound_ports(text: str, flag: str) -> tuple[int, ...] | None:
    """`*` -> None (capture every port); otherwise a port list (empty: capture no inbound traffic)."""
    if text.strip() == ALL_PORTS:
        return None
    return parse_ports(text, flag)


def parse_ip_ranges(text: str, flag: str) -> tuple[str, ...]:
    """`10.0.0.0/8, 192.168.1.1` -> ('10.0.0.0/8', '192.168.1.1/32'); IPv4 only, like the rules."""
    ranges = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(flag, f"has {item!r}, which is not an IP range",
                              "write CIDRs separated by commas, e.g. 10.96.0.0/12,169.254.169.254/32") from None
        if network.version != 4:
            raise ConfigError(flag, f"has the IPv6 range {item!r}; the capture rules are IPv4 only",
                              "leave IPv6 ranges out (IPv6 traffic is not captured)")
        ranges.append(str(network))
    return _unique(tuple(ranges))


def check_port(value: int, flag: str) -> int:
    if not 0 < value < 65536:
        raise ConfigError(flag, f"is {value}, which is not a port", "use a port from 1 to 65535")
    return value


def check_uid(value: int, flag: str) -> int:
    if value < 0:
        raise ConfigError(flag, f"is {value}", "use the proxy container's runAsUser, e.g. 1337")
    return value


def _unique(items: tuple[_T, ...]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(items))

