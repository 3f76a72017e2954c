"""Transparent capture in real network namespaces: the rules the init container installs,
and the netns cluster's own plumbing (ClusterIP DNAT, names) that the end-to-end relies on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from netns_cluster import PREFIX, Cluster, remove_leftovers
from netns_pods import exec_in_pod

from tracemesh_sidecar.iptables import count_our_rules

pytestmark = pytest.mark.netns

CAPTURE = ["tracemesh", "iptables", "--inbound-ports", "9080", "--exclude-outbound-ip-ranges", "10.96.0.0/12"]
ONE_SET = {"TRACEMESH_INBOUND": 1, "TRACEMESH_IN_REDIRECT": 1, "TRACEMESH_OUTPUT": 5, "TRACEMESH_REDIRECT": 1,
           "jumps": 2}


def nat_table(cluster: Cluster, name: str) -> str:
    done = exec_in_pod(cluster.pod(name), ["iptables-save", "-t", "nat"])
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_capture_twice_leaves_exactly_one_set_of_rules(cluster: Cluster) -> None:
    pod = cluster.add_pod("capture-twice", "default", {})
    for attempt in (1, 2):
        done = exec_in_pod(pod, CAPTURE)
        assert done.returncode == 0, f"run {attempt}: {done.stderr}"
        assert count_our_rules(nat_table(cluster, "capture-twice")) == ONE_SET
    assert "2 in force" in done.stdout


def test_capture_with_changed_flags_replaces_the_rules(cluster: Cluster) -> None:
    pod = cluster.add_pod("capture-change", "default", {})
    assert exec_in_pod(pod, CAPTURE).returncode == 0
    assert exec_in_pod(pod, [*CAPTURE[:3], "9080,9090", "--exclude-outbound-ports", "3306"]).returncode == 0
    saved = nat_table(cluster, "capture-change")
    assert "--dport 9090 -j TRACEMESH_IN_REDIRECT" in saved and "--dport 3306 -j RETURN" in saved
    assert "10.96.0.0/12" not in saved
    assert count_our_rules(saved)["jumps"] == 2


def test_capture_without_the_capability_exits_2_naming_it(cluster: Cluster) -> None:
    pod = cluster.add_pod("capture-denied", "default", {})
    done = exec_in_pod(pod, CAPTURE, uid=1337)
    assert done.returncode == 2
    assert "not permitted" in done.stderr and "NET_ADMIN" in done.stderr
    assert count_our_rules(nat_table(cluster, "capture-denied"))["jumps"] == 0


def test_dry_run_changes_nothing(cluster: Cluster) -> None:
    pod = cluster.add_pod("capture-dry", "default", {})
    done = exec_in_pod(pod, [*CAPTURE, "--dry-run"])
    assert done.returncode == 0 and "-A PREROUTING -p tcp -j TRACEMESH_INBOUND" in done.stdout
    assert "TRACEMESH" not in nat_table(cluster, "capture-dry")


def test_a_cluster_ip_name_reaches_an_endpoint_with_the_callers_pod_ip(cluster: Cluster) -> None:
    """The plumbing the end-to-end stands on: names resolve per namespace, the node DNATs a
    ClusterIP to an endpoint, and the callee sees the caller's own pod IP (no masquerade)."""
    client = cluster.add_pod("dnat-client", "default", {"app": "dnat-client"})
    server = cluster.add_pod("dnat-server", "other", {"app": "dnat-server"})
    cluster.add_service("dnat-server", "other", [(7000, 7001)], {"app": "dnat-server"})
    cluster.sync()
    script = ("import socket,sys;c=socket.create_connection((sys.argv[1],7000),timeout=5);"
              "print(c.recv(100).decode())")
    serve = subprocess.Popen(["ip", "netns", "exec", server.netns, sys.executable, "-c",
                              "import socket\ns=socket.create_server(('0.0.0.0',7001))\nprint('up',flush=True)\n"
                              "for _ in range(2):\n c,a=s.accept();c.sendall(a[0].encode());c.close()"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert serve.stdout is not None and serve.stdout.readline() == "up\n"
        for name in ("dnat-server.other", "dnat-server.other.svc.cluster.local"):
            done = exec_in_pod(client, ["python", "-c", script, name])
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == client.ip
        # The short name is for pods in the service's own namespace only, as with cluster DNS.
        unresolved = exec_in_pod(client, ["python", "-c", script, "dnat-server"])
        assert unresolved.returncode != 0 and "gaierror" in unresolved.stderr
    finally:
        serve.kill()
        serve.wait()


def test_namespaces_left_by_a_crashed_run_are_removed(cluster: Cluster) -> None:
    dead_pid = 4_194_305  # above PID_MAX_LIMIT (2**22): no process can have it
    leftover = f"{PREFIX}{dead_pid}-p0"
    subprocess.run(["ip", "netns", "add", leftover], check=True)
    (Path("/etc/netns") / leftover).mkdir(parents=True, exist_ok=True)
    assert leftover in remove_leftovers()
    assert leftover not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not (Path("/etc/netns") / leftover).exists()
    assert cluster.node in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
