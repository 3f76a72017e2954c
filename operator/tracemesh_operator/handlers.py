"""The kopf shell: watches pods, namespaces, Services, EndpointSlices, Telemetry, MeshConfig, Istio's mesh
ConfigMap, Istio's networking API (Gateway, VirtualService, DestinationRule) and the Gateway API (GatewayClass,
Gateway, HTTPRoute), feeds MeshState, writes statuses, and deploys each Gateway API Gateway as istiod does.

Everything is watched through kopf indexes, which kopf fills from its watch streams before any
handler runs: a restarted operator therefore compiles its first config from the complete
picture, never from a half-listed one, and nothing is ever re-listed. The handlers are
`on.event` handlers, which leave no annotations or finalizers on the users' objects.

Run with a `kopf.Memo` holding `state` (MeshState), `registry_sync` (its RegistrySync), `kube`
(KubeApi) and `ca_pem` (the webhook's CA, or None), as `control_plane` does; a startup handler
adds `namespaces` for the webhook.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping
from typing import Any, cast

import aiohttp
import kopf

from tracemesh_operator.compiler.gateway_api import CONTROLLER_NAME, GATEWAY_CLASS, GATEWAY_GROUP
from tracemesh_operator.compiler.services import SERVICE_NAME_LABEL, slice_key
from tracemesh_operator.conditions import status_patch
from tracemesh_operator.gateway_api_objects import gateway_class, gateway_workload
from tracemesh_operator.gateway_api_status import gateway_class_status, without_times
from tracemesh_operator.injection.certs import WEBHOOK_CONFIGURATION, sync_ca_bundle
from tracemesh_operator.injection.mutation import STATUS_ANNOTATION
from tracemesh_operator.kube_api import KubeApi, object_path
from tracemesh_operator.mesh_source import ISTIO_MESH_CONFIGMAP
from tracemesh_operator.records import (
    object_key,
    slim_configmap,
    slim_endpoint_slice,
    slim_gateway_api,
    slim_pod,
    slim_resource,
    slim_service,
)
from tracemesh_operator.registry_sync import RegistrySync
from tracemesh_operator.state import MeshState, StatusUpdate, World
from tracemesh_operator.workload import is_router

WEBHOOK_CONFIGURATIONS = ("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations")
TELEMETRY = ("telemetry.istio.io", "v1", "telemetries")
MESHCONFIG = ("tracemesh.io", "v1alpha1", "meshconfigs")
ENDPOINTSLICES = ("discovery.k8s.io", "v1", "endpointslices")
# Istio's networking API and the Gateway API, as (group, version, plural)
ISTIO_GATEWAYS = ("networking.istio.io", "v1", "gateways")
VIRTUAL_SERVICES = ("networking.istio.io", "v1", "virtualservices")
DESTINATION_RULES = ("networking.istio.io", "v1", "destinationrules")
K8S_GATEWAYS = ("gateway.networking.k8s.io", "v1", "gateways")
HTTP_ROUTES = ("gateway.networking.k8s.io", "v1", "httproutes")
# Status writes by (API group, kind): the two Gateway kinds differ by group.
PLURALS = {(group, kind): resource for kind, resource in (
    ("Telemetry", TELEMETRY), ("MeshConfig", MESHCONFIG), ("Gateway", ISTIO_GATEWAYS),
    ("VirtualService", VIRTUAL_SERVICES), ("DestinationRule", DESTINATION_RULES)) for group in (resource[0],)}


def has_proxy(body: kopf.Body, **_: Any) -> bool:
    """An injected pod, or a gateway running the proxy itself: the pods with a proxy to configure."""
    return STATUS_ANNOTATION in body.get("metadata", {}).get("annotations", {}) or is_router(body)

registry = kopf.OperatorRegistry()
log = logging.getLogger(__name__)


@kopf.on.login(registry=registry)
async def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, else the kubeconfig; the status writer gets the same credentials."""
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is not None:
        await memo.kube.connect(info)
        # istiod's default GatewayClass `istio`, created when missing (without the Gateway API CRDs, nothing).
        await memo.kube.create_or_patch(f"/apis/{GATEWAY_GROUP}/v1/gatewayclasses", gateway_class())
    return info


@kopf.on.startup(registry=registry)
async def share_namespace_index(memo: kopf.Memo, **kwargs: Any) -> None:
    """The webhook answers outside any handler: hand it the live namespace index (kopf keeps it current), and the
    mesh config indexes, whose defaultConfig each injected pod's ProxyConfig starts from."""
    memo.namespaces = kwargs["tm_namespaces"]
    memo.meshconfigs = kwargs["tm_meshconfigs"]
    memo.mesh_configmaps = kwargs["tm_mesh_configmaps"]


@kopf.on.cleanup(registry=registry)
async def close(memo: kopf.Memo, **_: Any) -> None:
    memo.registry_sync.cancel()
    await memo.kube.close()


# -- indexes: the operator's view of the cluster ----------------------------------------------------


@kopf.index("pods", when=has_proxy, registry=registry)
def tm_pods(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, dict[str, Any]]:
    """Injected and gateway pods by namespace (any other pod has no proxy to configure)."""
    return {str(namespace): slim_pod(body)}


@kopf.index(*TELEMETRY, registry=registry)
def tm_telemetries(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, dict[str, Any]]:
    return {str(namespace): slim_resource(body)}


@kopf.index(*MESHCONFIG, registry=registry)
def tm_meshconfigs(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    return {object_key(body): slim_resource(body)}


@kopf.index("configmaps", field="metadata.name", value=ISTIO_MESH_CONFIGMAP, registry=registry)
def tm_mesh_configmaps(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    """Istio's mesh ConfigMaps (`istio`, key `mesh`), by `namespace/name`: the mesh config where no MeshConfig is."""
    return {object_key(body): slim_configmap(body)}


@kopf.index("namespaces", registry=registry)
def tm_namespaces(name: str, labels: Mapping[str, str], **_: Any) -> dict[str, dict[str, str]]:
    """Namespace labels by name: `istio-injection` decides injection, and an AdmissionReview does not carry it."""
    return {name: dict(labels)}


@kopf.index("services", registry=registry)
def tm_services(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    """Services by `namespace/name`: their ClusterIPs and ports make the mesh's service registry."""
    return {object_key(body): slim_service(body)}


@kopf.index(*ENDPOINTSLICES, registry=registry)
def tm_endpoint_slices(body: kopf.Body, namespace: str | None, labels: Mapping[str, str],
                       **_: Any) -> dict[str, dict[str, Any]]:
    """EndpointSlices by their Service's `namespace/name` (a Service has one or more); others are not kept."""
    service = labels.get(SERVICE_NAME_LABEL)
    return {slice_key(str(namespace), service): slim_endpoint_slice(body)} if service else {}


def _slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """The Gateway API's objects keep their whole status (a status write replaces its lists), Istio's their
    conditions."""
    return slim_gateway_api(body) if str(body.get("apiVersion")).startswith(GATEWAY_GROUP) else slim_resource(body)


def _by_namespace(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, dict[str, Any]]:
    return {str(namespace): _slim(body)}


for _index_name, _resource in (("tm_gateways", ISTIO_GATEWAYS), ("tm_virtual_services", VIRTUAL_SERVICES),
                               ("tm_destination_rules", DESTINATION_RULES), ("tm_k8s_gateways", K8S_GATEWAYS),
                               ("tm_http_routes", HTTP_ROUTES)):
    kopf.index(*_resource, id=_index_name, registry=registry)(_by_namespace)


def _world(kwargs: Mapping[str, Any]) -> World:
    return World(pods=kwargs["tm_pods"], telemetries=kwargs["tm_telemetries"], meshconfigs=kwargs["tm_meshconfigs"],
                 services=kwargs["tm_services"], endpoint_slices=kwargs["tm_endpoint_slices"],
                 mesh_configmaps=kwargs["tm_mesh_configmaps"], gateways=kwargs["tm_gateways"],
                 virtual_services=kwargs["tm_virtual_services"], destination_rules=kwargs["tm_destination_rules"],
                 k8s_gateways=kwargs["tm_k8s_gateways"], http_routes=kwargs["tm_http_routes"])


def _deleted(event: Mapping[str, Any]) -> bool:
    return event.get("type") == "DELETED"


# -- events -----------------------------------------------------------------------------------------


@kopf.on.event("pods", when=has_proxy, registry=registry)
async def pod_event(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    state: MeshState = memo.state
    await _write(state.pod_changed(slim_pod(body), _deleted(event), _world(kwargs)), state, memo.kube)


@kopf.on.event(*TELEMETRY, registry=registry)
async def telemetry_event(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    state: MeshState = memo.state
    await _write(state.telemetry_changed(slim_resource(body), _deleted(event), _world(kwargs)), state, memo.kube)


@kopf.on.event(*MESHCONFIG, registry=registry)
async def meshconfig_event(memo: kopf.Memo, **kwargs: Any) -> None:
    state: MeshState = memo.state
    await _write(state.mesh_changed(_world(kwargs)), state, memo.kube)


@kopf.on.event("configmaps", field="metadata.name", value=ISTIO_MESH_CONFIGMAP, registry=registry)
async def mesh_configmap_event(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Istio's mesh ConfigMap changed: it is the mesh config wherever no MeshConfig resource is."""
    state: MeshState = memo.state
    world = _world(kwargs)
    await _write(state.mesh_changed(world), state, memo.kube)
    for message in state.configmap_report(world):
        # A ConfigMap has no status: what it holds that is wrong or not acted on becomes Warning Events.
        kopf.warn(body, reason="MeshConfigMap", message=message)
        log.warning("%s", message)


async def networking_event(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Istio's Gateway, VirtualService, DestinationRule; the Gateway API's Gateway, HTTPRoute: routes are recompiled."""
    state: MeshState = memo.state
    world = _world(kwargs)
    slim = _slim(body)
    await _write(state.networking_changed(slim, _deleted(event), world), state, memo.kube)
    if slim.get("kind") == "Gateway" and slim["apiVersion"].startswith(GATEWAY_GROUP) and state.gateway_workload_due(
            slim, _deleted(event)):
        if GATEWAY_CLASS not in kwargs["tm_gateway_classes"]:
            # The Gateway API CRDs came after the operator started: the class it names is created now.
            await memo.kube.create_or_patch(f"/apis/{GATEWAY_GROUP}/v1/gatewayclasses", gateway_class())
        await _ensure_gateway_workload(slim, state, memo)
    await _write_gateway_api_statuses(state, world, memo.kube)


async def _ensure_gateway_workload(gateway: Mapping[str, Any], state: MeshState, memo: kopf.Memo) -> None:
    """A Gateway of class istio gets its Deployment and Service `<name>-istio`, as istiod deploys them."""
    kube: KubeApi = memo.kube
    namespace = gateway["metadata"]["namespace"]
    deployment, service = gateway_workload(gateway, memo.proxy_image, memo.discovery_address)
    written = await asyncio.gather(
        kube.create_or_patch(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment),
        kube.create_or_patch(f"/api/v1/namespaces/{namespace}/services", service))
    if not all(written):
        state.gateway_workload_failed(gateway)


async def _write_gateway_api_statuses(state: MeshState, world: World, kube: KubeApi) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    writes = []
    for body, status in state.gateway_api_statuses(world, now):
        metadata = body["metadata"]
        plural = "gateways" if body.get("kind") == "Gateway" else "httproutes"
        writes.append(kube.patch(object_path(f"{GATEWAY_GROUP}/v1", plural, metadata["namespace"], metadata["name"],
                                             "status"), {"status": status}))
    await asyncio.gather(*writes)


@kopf.index(GATEWAY_GROUP, "v1", "gatewayclasses", registry=registry)
def tm_gateway_classes(name: str, **_: Any) -> dict[str, bool]:
    """The GatewayClasses there are, by name."""
    return {name: True}


@kopf.on.event(GATEWAY_GROUP, "v1", "gatewayclasses", field="metadata.name", value=GATEWAY_CLASS,
               registry=registry)
async def gateway_class_event(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The GatewayClass istio is Accepted by this controller (its controllerName is istiod's)."""
    if _deleted(event) or (body.get("spec") or {}).get("controllerName") != CONTROLLER_NAME:
        return
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = gateway_class_status(body, now)
    if without_times(status["conditions"]) != without_times((body.get("status") or {}).get("conditions")):
        kube: KubeApi = memo.kube
        await kube.patch(object_path(f"{GATEWAY_GROUP}/v1", "gatewayclasses", None, GATEWAY_CLASS, "status"),
                         {"status": status})


for _resource in (ISTIO_GATEWAYS, VIRTUAL_SERVICES, DESTINATION_RULES, K8S_GATEWAYS, HTTP_ROUTES):
    kopf.on.event(*_resource, id=f"networking-{_resource[2]}.{_resource[0]}", registry=registry)(networking_event)


@kopf.on.event("services", registry=registry)
async def service_event(memo: kopf.Memo, **kwargs: Any) -> None:
    sync: RegistrySync = memo.registry_sync
    sync.changed(_world(kwargs))
    # A Gateway's Service got its load balancer address (or lost it): the Gateway's status.addresses follow; a
    # VirtualService's destination without a port may resolve now (or no longer).
    await _write_gateway_api_statuses(memo.state, _world(kwargs), memo.kube)
    await _write(memo.state.networking_statuses(_world(kwargs)), memo.state, memo.kube)


@kopf.on.event(*ENDPOINTSLICES, registry=registry)
async def endpoint_slice_event(memo: kopf.Memo, **kwargs: Any) -> None:
    """Endpoints scaled, became ready or went away: the sidecars' per-request balancing follows (Istio's EDS)."""
    sync: RegistrySync = memo.registry_sync
    sync.changed(_world(kwargs))
    await _write_gateway_api_statuses(memo.state, _world(kwargs), memo.kube)


async def _write(updates: list[StatusUpdate], state: MeshState, kube: KubeApi) -> None:
    """Each changed Ready and Honoured condition into the object's status; a Warning Event for each False one.

    A write that failed is forgotten, so that the object's next event writes it again.
    """
    if not updates:
        return
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    writes = []
    for update in updates:
        body = update.body
        group, version, plural = PLURALS[(str(body.get("apiVersion") or "").partition("/")[0], str(body.get("kind")))]
        metadata = body.get("metadata", {})
        path = object_path(f"{group}/{version}", plural, metadata.get("namespace"), metadata["name"], "status")
        writes.append(kube.patch(path, {"status": status_patch(body, update.conditions, now)}))
        # Honoured=False of a rejected resource only points at Ready: one Event, Ready's, says it all.
        for condition in update.conditions if update.condition.ready else (update.condition,):
            if not condition.ready:
                kopf.warn(kopf.Body(cast("kopf.RawBody", dict(body))), reason=condition.reason,
                          message=condition.message)
                log.warning("%s %s: %s", body.get("kind"), metadata.get("name"), condition.message)
    for update, written in zip(updates, await asyncio.gather(*writes), strict=True):
        if not written:
            state.status_not_written(update)


@kopf.on.event(*WEBHOOK_CONFIGURATIONS, field="metadata.name", value=WEBHOOK_CONFIGURATION, registry=registry)
async def webhook_configuration_event(event: Mapping[str, Any], memo: kopf.Memo, logger: kopf.Logger,
                                      **_: Any) -> None:
    """Keeps the caBundle in step with the operator's CA: a re-apply of the manifests empties it again."""
    kube: KubeApi = memo.kube
    if memo.ca_pem is None or _deleted(event) or kube.session is None or kube.server is None:
        return
    try:
        if await sync_ca_bundle(kube.session, kube.server, memo.ca_pem):
            logger.info("put the webhook CA into the caBundle of %s", WEBHOOK_CONFIGURATION)
    except (RuntimeError, aiohttp.ClientError, TimeoutError) as error:
        # The next change of the configuration (or the operator's restart) tries again.
        logger.warning("could not update the caBundle of %s: %s", WEBHOOK_CONFIGURATION, error)
