"""The sidecar's side of config push: its bootstrap config from the pod, and the subscription client."""

from tracemesh_sidecar.discovery.bootstrap import bootstrap_config
from tracemesh_sidecar.discovery.client import DiscoveryClient, backoff_delay

__all__ = ["DiscoveryClient", "backoff_delay", "bootstrap_config"]
