"""The sidecar's side of config push: its bootstrap config from the pod, and the subscription client."""

from tracemesh_sidecar.discovery.bootstrap import bootstrap_config
from tracemesh_sidecar.discovery.client import DiscoveryClient

__all__ = ["DiscoveryClient", "bootstrap_config"]
