"""Config push (Istio's xDS, our way): the hub that holds every pod's config and the long-poll server."""

from tracemesh_operator.discovery.hub import ConfigHub, ProxyStatus

__all__ = ["ConfigHub", "ProxyStatus"]
