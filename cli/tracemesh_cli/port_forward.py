"""A local TCP listener whose every connection is carried to a pod's port: `kubectl port-forward`, in-process.

The tunnel to the pod is a seam (`OpenTunnel`): in a cluster it is the official client's
`kubernetes.stream.portforward` (one websocket per connection, as the API server's port-forward
protocol carries one stream per port and request); anything giving a connected socket will do.
Port choice is istioctl's (istioctl/pkg/dashboard/dashboard.go portForward): the --port asked
for, else the remote port, else any free port.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable, Sequence

from kubernetes import client
from kubernetes.stream import portforward

OpenTunnel = Callable[[], socket.socket]
CHUNK = 65536


def kube_tunnel(api: client.ApiClient, pod: str, namespace: str, port: int) -> OpenTunnel:
    core = client.CoreV1Api(api)

    def open_tunnel() -> socket.socket:
        forward = portforward(core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port))
        tunnel: socket.socket = forward.socket(port)
        return tunnel

    return open_tunnel


def local_port_preferences(asked: int, remote_port: int) -> list[int]:
    """istioctl: the --port asked for, alone; without one, the remote port, then any free one."""
    return [asked] if asked else [remote_port, 0]


def listen(address: str, ports: Sequence[int]) -> socket.socket:
    """Bound and listening on the first of `ports` that is free; OSError naming them all when none is."""
    host = "127.0.0.1" if address == "localhost" else address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    errors = []
    for port in ports:
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(64)
            return listener
        except OSError as error:
            listener.close()
            errors.append(f"{host}:{port}: {error.strerror or error}")
    raise OSError(f"cannot listen on {', '.join(errors)}")


def serve(listener: socket.socket, open_tunnel: OpenTunnel, stop: threading.Event,
          on_error: Callable[[str], None] = lambda _: None) -> None:
    """Accepts until `stop` is set; every connection gets its own tunnel and a thread pumping both ways."""
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            local, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return  # the listener was closed
        threading.Thread(target=_carry, args=(local, open_tunnel, stop, on_error), daemon=True).start()


def _carry(local: socket.socket, open_tunnel: OpenTunnel, stop: threading.Event,
           on_error: Callable[[str], None]) -> None:
    with local:
        try:
            remote = open_tunnel()
        except Exception as error:  # the API server refused or is gone: this connection fails, the others go on
            on_error(f"cannot open the port-forward stream: {error}")
            return
        try:
            _pump(local, remote, stop)
        finally:
            remote.close()  # not `with`: the client's port-forward socket wrapper is no context manager


def _pump(a: socket.socket, b: socket.socket, stop: threading.Event) -> None:
    """Bytes both ways until either side closes; a half-close is passed on as one."""
    peer = {a: b, b: a}
    open_for_reading = {a, b}
    while open_for_reading and not stop.is_set():
        readable, _, _ = select.select(list(open_for_reading), [], [], 0.2)
        for source in readable:
            try:
                data = source.recv(CHUNK)
            except OSError:
                return
            if not data:
                open_for_reading.discard(source)
                with contextlib.suppress(OSError):
                    peer[source].shutdown(socket.SHUT_WR)
                continue
            try:
                peer[source].sendall(data)
            except OSError:
                return
