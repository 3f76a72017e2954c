"""What the operator keeps of each watched object: the few fields it reads, not the whole body.

A pod body is 5-20 KB (managedFields, container specs); the slim record is a few hundred
bytes, which is what keeps 1000 pods well inside the operator's memory budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracemesh_operator.compiler.providers import WORKLOAD_ANNOTATION_PREFIX
from tracemesh_operator.mesh_source import MESH_KEY
from tracemesh_operator.workload import is_router


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _identity(body: Mapping[str, Any]) -> dict[str, Any]:
    """apiVersion, kind and the metadata that names the object (enough for status patches and Events)."""
    metadata = _mapping(body.get("metadata"))
    kept = {key: metadata[key] for key in ("name", "namespace", "uid", "generation", "creationTimestamp")
            if metadata.get(key) is not None}
    return {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": kept}


def slim_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    """What workload.proxy_config_for_pod reads: identity, labels, owner, service account, ports, IP."""
    record = _identity(body)
    metadata = _mapping(body.get("metadata"))
    record["metadata"]["labels"] = dict(_mapping(metadata.get("labels")))
    # The per-workload tracing overrides (compiler/providers.py WORKLOAD_ANNOTATIONS), only when the pod has some.
    tracing = {key: value for key, value in _mapping(metadata.get("annotations")).items()
               if str(key).startswith(WORKLOAD_ANNOTATION_PREFIX)}
    if tracing:
        record["metadata"]["annotations"] = tracing
    owners = [_mapping(owner) for owner in _list(metadata.get("ownerReferences"))]
    record["metadata"]["ownerReferences"] = [
        {"kind": owner.get("kind"), "name": owner.get("name"), "controller": owner.get("controller")}
        for owner in owners if owner.get("controller")
    ]
    spec = _mapping(body.get("spec"))
    record["spec"] = {
        "serviceAccountName": spec.get("serviceAccountName"),
        # Port names: a Service's named targetPort resolves against them (workload.inbound_ports).
        "containers": [{"ports": [{"containerPort": port.get("containerPort"), "protocol": port.get("protocol"),
                                   "name": port.get("name")}
                                  for port in map(_mapping, _list(_mapping(container).get("ports")))]}
                       for container in _list(spec.get("containers"))],
    }
    if is_router(body):  # a gateway: what makes it one is kept, the rest of its command line is not
        record["spec"]["containers"].append({"args": ["proxy", "router"]})
    record["status"] = {"podIP": _mapping(body.get("status")).get("podIP")}
    return record


def slim_service(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the service registry reads of a Service (identity, its cluster IPs and ports, each port's protocol
    fields), and what names the inbound ports of the pods it selects (its type and selector)."""
    record = _identity(body)
    spec = _mapping(body.get("spec"))
    record["spec"] = {
        "type": spec.get("type"),
        "selector": dict(_mapping(spec.get("selector"))),
        "clusterIP": spec.get("clusterIP"),
        "clusterIPs": list(_list(spec.get("clusterIPs"))),
        "ports": [{key: port.get(key) for key in ("name", "port", "targetPort", "protocol", "appProtocol")}
                  for port in map(_mapping, _list(spec.get("ports")))],
    }
    # A gateway's Service: its load balancer's address goes into the Gateway's status.addresses.
    ingress = _list(_mapping(_mapping(body.get("status")).get("loadBalancer")).get("ingress"))
    record["status"] = {"loadBalancer": {"ingress": [
        {key: entry[key] for key in ("ip", "hostname") if key in entry} for entry in map(_mapping, ingress)]}}
    return record


def slim_endpoint_slice(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the service registry reads of an EndpointSlice: its ports, and each endpoint's addresses, readiness
    and pod."""
    record = _identity(body)
    record["addressType"] = body.get("addressType")
    record["ports"] = [{key: port.get(key) for key in ("name", "port", "protocol")}
                       for port in map(_mapping, _list(body.get("ports")))]
    record["endpoints"] = [
        {"addresses": list(_list(endpoint.get("addresses"))),
         "conditions": {"ready": _mapping(endpoint.get("conditions")).get("ready")},
         # The pod behind the endpoint: its labels put it into DestinationRule subsets.
         "targetRef": {key: _mapping(endpoint.get("targetRef")).get(key) for key in ("kind", "namespace", "name")}}
        for endpoint in map(_mapping, _list(body.get("endpoints")))
    ]
    return record


def slim_resource(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Telemetry or MeshConfig: identity, the whole spec, and its status conditions.

    All the conditions, not only our Ready one: a status write sends the whole list, and must
    not wipe what other controllers wrote there.
    """
    record = _identity(body)
    record["spec"] = body.get("spec")
    status = _mapping(body.get("status"))
    conditions = status.get("conditions")
    kept = [dict(entry) for entry in (conditions if isinstance(conditions, list) else ()) if isinstance(entry, Mapping)]
    record["status"] = {"conditions": kept} if kept else {}
    return record


def object_key(body: Mapping[str, Any]) -> str:
    """`namespace/name` (just `name` for cluster-scoped objects): the ConfigHub's pod key shape."""
    metadata = _mapping(body.get("metadata"))
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata.get('name')}" if namespace else str(metadata.get("name"))


def slim_configmap(body: Mapping[str, Any]) -> dict[str, Any]:
    """Istio's mesh ConfigMap: identity and its `mesh` key, the only data the operator reads."""
    record = _identity(body)
    data = _mapping(body.get("data"))
    record["data"] = {MESH_KEY: data[MESH_KEY]} if MESH_KEY in data else {}
    return record


def slim_gateway_api(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Gateway API Gateway or HTTPRoute: identity, annotations (Istio's service-type), spec and the whole status
    (addresses, listeners, parents: a status write sends them whole)."""
    record = _identity(body)
    record["metadata"]["annotations"] = dict(_mapping(_mapping(body.get("metadata")).get("annotations")))
    record["spec"] = body.get("spec")
    record["status"] = dict(_mapping(body.get("status")))
    return record

