"""The kopf shell: watches pods, namespaces, Services, EndpointSlices, Telemetry, MeshConfig and Istio's mesh
ConfigMap, feeds MeshState, writes statuses.

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

from tracemesh_operator.compiler.services import SERVICE_NAME_LABEL, slice_key
from tracemesh_operator.conditions import status_patch
from tracemesh_operator.injection.certs import WEBHOOK_CONFIGURATION, sync_ca_bundle
from tracemesh_operator.injection.mutation import STATUS_ANNOTATION
from tracemesh_operator.kube_api import KubeApi, object_path
from tracemesh_operator.mesh_source import ISTIO_MESH_CONFIGMAP
from tracemesh_operator.records import (
    object_key,
    slim_configmap,
    slim_endpoint_slice,
    slim_pod,
    slim_resource,
    slim_service,
)
from tracemesh_operator.registry_sync import RegistrySync
from tracemesh_operator.state import MeshState, StatusUpdate, World

WEBHOOK_CONFIGURATIONS = ("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations")
TELEMETRY = ("telemetry.istio.io", "v1", "telemetries")
MESHCONFIG = ("tracemesh.io", "v1alpha1", "meshconfigs")
ENDPOINTSLICES = ("discovery.k8s.io", "v1", "endpointslices")
PLURALS = {"Telemetry": TELEMETRY, "MeshConfig": MESHCONFIG}
INJECTED = {STATUS_ANNOTATION: kopf.PRESENT}  # only an injected pod has a proxy to configure

registry = kopf.OperatorRegistry()
log = logging.getLogger(__name__)


@kopf.on.login(registry=registry)
async def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, else the kubeconfig; the status writer gets the same credentials."""
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is not None:
        await memo.kube.connect(info)
    return info


@kopf.on.startup(registry=registry)
async def share_namespace_index(memo: kopf.Memo, **kwargs: Any) -> None:
    """The webhook answers outside any handler: hand it the live namespace index (kopf keeps it current)."""
    memo.namespaces = kwargs["tm_namespaces"]


@kopf.on.cleanup(registry=registry)
async def close(memo: kopf.Memo, **_: Any) -> None:
    memo.registry_sync.cancel()
    await memo.kube.close()


# -- indexes: the operator's view of the cluster ----------------------------------------------------


@kopf.index("pods", annotations=INJECTED, registry=registry)
def tm_pods(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, dict[str, Any]]:
    """Injected pods by namespace (a pod without the injection marker has no proxy to configure)."""
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


def _world(kwargs: Mapping[str, Any]) -> World:
    return World(pods=kwargs["tm_pods"], telemetries=kwargs["tm_telemetries"], meshconfigs=kwargs["tm_meshconfigs"],
                 services=kwargs["tm_services"], endpoint_slices=kwargs["tm_endpoint_slices"],
                 mesh_configmaps=kwargs["tm_mesh_configmaps"])


def _deleted(event: Mapping[str, Any]) -> bool:
    return event.get("type") == "DELETED"


# -- events -----------------------------------------------------------------------------------------


@kopf.on.event("pods", annotations=INJECTED, registry=registry)
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


@kopf.on.event("services", registry=registry)
async def service_event(memo: kopf.Memo, **kwargs: Any) -> None:
    sync: RegistrySync = memo.registry_sync
    sync.changed(_world(kwargs))


@kopf.on.event(*ENDPOINTSLICES, registry=registry)
async def endpoint_slice_event(memo: kopf.Memo, **kwargs: Any) -> None:
    """Endpoints scaled, became ready or went away: the sidecars' per-request balancing follows (Istio's EDS)."""
    sync: RegistrySync = memo.registry_sync
    sync.changed(_world(kwargs))


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
        group, version, plural = PLURALS[str(body.get("kind"))]
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
