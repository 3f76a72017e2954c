"""A small Kubernetes-like network on one machine: pods are network namespaces.

    node netns  (tmesh-<pid>-node)      bridge tm0 10.213.0.1/24, ip_forward, br_netfilter,
                                        kube-proxy's ClusterIP DNAT in chain TMESH-SERVICES
      veth <-> pod netns (tmesh-<pid>-<n>)   eth0 10.213.0.<n>/24, default via 10.213.0.1

ClusterIPs (10.213.1.0/24) are on no interface: a pod reaches one through its default
route, the node DNATs it to an endpoint (chosen at random, like kube-proxy's iptables
mode), and br_netfilter lets conntrack undo the DNAT on the reply, which is bridged
straight back. Names resolve from /etc/netns/<pod>/hosts, which `ip netns exec`
bind-mounts over /etc/hosts, with the search-domain short names of the pod's namespace.

Everything lives in namespaces this module creates; the host's own network is never
touched. Each run's names carry its PID, so a crashed run's leftovers are recognised
and removed by the next one.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netns_net import run

PREFIX = "tmesh-"
POD_NETWORK = ipaddress.ip_network("10.213.0.0/24")
SERVICE_NETWORK = ipaddress.ip_network("10.213.1.0/24")
NODE_IP = "10.213.0.1"
BRIDGE = "tm0"
SERVICES_CHAIN = "TMESH-SERVICES"
CLUSTER_DOMAIN = "cluster.local"
_NAME = re.compile(rf"^{PREFIX}(\d+)-")


@dataclass
class PodNet:
    name: str
    namespace: str
    netns: str
    ip: str
    labels: dict[str, str]


@dataclass(frozen=True)
class ServicePort:
    port: int
    target_port: int
    name: str = ""  # what Istio's protocol selection reads (`grpc`, `http2-api`); unnamed: `port-<port>`


@dataclass
class Service:
    name: str
    namespace: str
    cluster_ip: str
    ports: tuple[ServicePort, ...]
    selector: dict[str, str]
    endpoints: list[str] = field(default_factory=list)  # pod IPs
    endpoint_pods: list[str] = field(default_factory=list)  # their pods' names, in the same order

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{CLUSTER_DOMAIN}"

    def api_objects(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """This Service and its EndpointSlice as the API server serves them (what the operator watches):
        the endpointslice controller copies each port's name and gives its target port."""
        metadata = {"name": self.name, "namespace": self.namespace, "uid": f"uid-svc-{self.namespace}-{self.name}"}
        names = [port.name or f"port-{port.port}" for port in self.ports]
        service = {"apiVersion": "v1", "kind": "Service", "metadata": metadata,
                   "spec": {"clusterIP": self.cluster_ip, "clusterIPs": [self.cluster_ip], "selector": self.selector,
                            "ports": [{"name": name, "port": port.port, "targetPort": port.target_port,
                                       "protocol": "TCP"} for name, port in zip(names, self.ports, strict=True)]}}
        endpoint_slice = {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{self.name}-netns", "namespace": self.namespace,
                         "labels": {"kubernetes.io/service-name": self.name}},
            "ports": [{"name": name, "port": port.target_port, "protocol": "TCP"}
                      for name, port in zip(names, self.ports, strict=True)],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True},
                           "targetRef": {"kind": "Pod", "namespace": self.namespace, "name": pod}}
                          for ip, pod in zip(self.endpoints, self.endpoint_pods, strict=True)],
        }
        return service, endpoint_slice


def service_nat_rules(services: Sequence[Service]) -> str:
    """The node's nat table, as kube-proxy's iptables mode builds it: a per-service chain that
    picks an endpoint with `-m statistic --mode random`, a per-endpoint chain that DNATs."""
    chains = [SERVICES_CHAIN]
    rules = [f"-A PREROUTING -j {SERVICES_CHAIN}", f"-A OUTPUT -j {SERVICES_CHAIN}"]
    for s_index, service in enumerate(services):
        for port in service.ports:
            svc_chain = f"TMESH-SVC-{s_index}-{port.port}"
            chains.append(svc_chain)
            rules.append(f"-A {SERVICES_CHAIN} -d {service.cluster_ip}/32 -p tcp -m tcp --dport {port.port} "
                         f"-j {svc_chain}")
            for e_index, endpoint in enumerate(service.endpoints):
                sep_chain = f"TMESH-SEP-{s_index}-{port.port}-{e_index}"
                chains.append(sep_chain)
                remaining = len(service.endpoints) - e_index
                pick = f"-m statistic --mode random --probability {1 / remaining:.5f} " if remaining > 1 else ""
                rules.append(f"-A {svc_chain} {pick}-j {sep_chain}")
                rules.append(f"-A {sep_chain} -p tcp -m tcp -j DNAT --to-destination {endpoint}:{port.target_port}")
    lines = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             ":POSTROUTING ACCEPT [0:0]", *(f":{chain} - [0:0]" for chain in chains), *rules, "COMMIT"]
    return "\n".join(lines) + "\n"


def hosts_file(pod_namespace: str, services: Sequence[Service]) -> str:
    """/etc/hosts as cluster DNS would answer it for a pod in `pod_namespace` (search domains included)."""
    lines = ["127.0.0.1 localhost"]
    for service in services:
        names = [f"{service.name}.{service.namespace}", f"{service.name}.{service.namespace}.svc", service.fqdn]
        if service.namespace == pod_namespace:
            names.insert(0, service.name)
        lines.append(f"{service.cluster_ip} {' '.join(names)}")
    return "\n".join(lines) + "\n"


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


class Cluster:
    def __init__(self) -> None:
        self.run_id = os.getpid()
        self.node = f"{PREFIX}{self.run_id}-node"
        self.pods: list[PodNet] = []
        self.services: list[Service] = []
        self._hosts = POD_NETWORK.hosts()
        next(self._hosts)  # the node's bridge address
        self._cluster_ips = SERVICE_NETWORK.hosts()

    def up(self) -> None:
        self._add_netns(self.node)
        node = ["ip", "-n", self.node]
        run([*node, "link", "set", "lo", "up"])
        run([*node, "link", "add", BRIDGE, "type", "bridge"])
        run([*node, "addr", "add", f"{NODE_IP}/{POD_NETWORK.prefixlen}", "dev", BRIDGE])
        run([*node, "link", "set", BRIDGE, "up"])
        # The node's own connections to ClusterIPs (port-forwards, probes) need a route before DNAT.
        run([*node, "route", "add", str(SERVICE_NETWORK), "dev", BRIDGE])
        # Routing to ClusterIPs happens here; br_netfilter lets conntrack see the bridged replies.
        self.exec_node(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        self.exec_node(["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"])

    def add_pod(self, name: str, namespace: str, labels: Mapping[str, str]) -> PodNet:
        index = len(self.pods)
        pod = PodNet(name=name, namespace=namespace, netns=f"{PREFIX}{self.run_id}-p{index}",
                     ip=str(next(self._hosts)), labels=dict(labels))
        self._add_netns(pod.netns)
        veth = f"veth{index}"
        run(["ip", "-n", self.node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod.netns])
        run(["ip", "-n", self.node, "link", "set", veth, "master", BRIDGE, "up"])
        inside = ["ip", "-n", pod.netns]
        run([*inside, "link", "set", "lo", "up"])
        run([*inside, "addr", "add", f"{pod.ip}/{POD_NETWORK.prefixlen}", "dev", "eth0"])
        run([*inside, "link", "set", "eth0", "up"])
        run([*inside, "route", "add", "default", "via", NODE_IP])
        self.pods.append(pod)
        return pod

    def add_service(self, name: str, namespace: str, ports: Sequence[tuple[int, int]],
                    selector: Mapping[str, str], port_names: Mapping[int, str] | None = None) -> Service:
        names = port_names or {}
        service = Service(name=name, namespace=namespace, cluster_ip=str(next(self._cluster_ips)),
                          ports=tuple(ServicePort(port, target, names.get(port, "")) for port, target in ports),
                          selector=dict(selector))
        self.services.append(service)
        return service

    def sync(self) -> None:
        """Endpoints, the node's DNAT rules and every pod's hosts file, from the pods and services so far.

        Hosts files are rewritten in place: `ip netns exec` bind-mounts the file, so a new inode
        would go unseen by processes already running."""
        for service in self.services:
            selected = [pod for pod in self.pods
                        if pod.namespace == service.namespace and selects(service.selector, pod.labels)]
            service.endpoints = [pod.ip for pod in selected]
            service.endpoint_pods = [pod.name for pod in selected]
        run(["ip", "netns", "exec", self.node, "iptables-restore"], stdin=service_nat_rules(self.services))
        for pod in self.pods:
            path = Path("/etc/netns") / pod.netns / "hosts"
            with open(path, "w") as hosts:
                hosts.write(hosts_file(pod.namespace, self.services))
            path.chmod(0o644)

    def service(self, name: str, namespace: str = "default") -> Service:
        return next(s for s in self.services if s.name == name and s.namespace == namespace)

    def pod(self, name: str) -> PodNet:
        return next(p for p in self.pods if p.name == name)

    def exec_node(self, argv: Sequence[str]) -> None:
        run(["ip", "netns", "exec", self.node, *argv])

    def down(self) -> None:
        for netns in [pod.netns for pod in self.pods] + [self.node]:
            delete_netns(netns)

    def _add_netns(self, netns: str) -> None:
        run(["ip", "netns", "add", netns])
        etc = Path("/etc/netns") / netns
        etc.mkdir(parents=True, exist_ok=True)
        etc.chmod(0o755)
        # No DNS server in here: an unknown name must fail at once, not after the host resolver's timeouts.
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        (etc / "resolv.conf").chmod(0o644)


def delete_netns(netns: str) -> None:
    run(["ip", "netns", "del", netns], check=False)
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(Path("/etc/netns") / netns)


def remove_leftovers() -> list[str]:
    """Namespaces of earlier runs whose process is gone (a crash, a kill -9): deleted, and named."""
    removed = []
    names = [line.split()[0] for line in run(["ip", "netns", "list"]).stdout.splitlines() if line.strip()]
    etc = Path("/etc/netns")
    names += [path.name for path in etc.iterdir()] if etc.is_dir() else []
    for name in sorted(set(names)):
        match = _NAME.match(name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            delete_netns(name)
            removed.append(name)
    return removed
