"""The sidecar injection itself: (pod, its namespace's labels, settings) -> a JSON patch, or why not.

Pure: the webhook, `tracemesh kube-inject` and the netns end-to-end all run this one
function, so what a pod gets is decided in exactly one place. Rules (the mesh contract):
an already-injected pod (annotation `sidecar.istio.io/status`) and a hostNetwork pod are
left alone; pod label `sidecar.istio.io/inject: "false"` or namespace label
`istio-injection=disabled` opt out and win; `istio-injection=enabled` on the namespace or
`sidecar.istio.io/inject: "true"` on the pod opt in.

Bad interception annotations raise ConfigError naming the annotation: the webhook then
refuses the pod with that message (as Istio does), rather than start it with capture rules
nobody asked for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracemesh_operator.injection.patch import add, pointer
from tracemesh_operator.injection.proxy_config import PodProxyConfig, pod_proxy_config
from tracemesh_operator.workload import canonical_revision, canonical_service, inbound_ports, pod_labels
from tracemesh_sidecar.config import ConfigError
from tracemesh_sidecar.discovery.bootstrap import (
    ENV_APP_PORTS,
    ENV_CANONICAL_REVISION,
    ENV_CANONICAL_SERVICE,
    ENV_LABELS,
    ENV_NAMESPACE,
    ENV_POD_IP,
    ENV_POD_NAME,
    ENV_SERVICE_ACCOUNT,
)
from tracemesh_sidecar.iptables.spec import ALL_PORTS, PROXY_UID, parse_ip_ranges, parse_ports
from tracemesh_sidecar.proxy.termination import ENV_PROXY_CONFIG

STATUS_ANNOTATION = "sidecar.istio.io/status"
INJECT_LABEL = "sidecar.istio.io/inject"
NAMESPACE_LABEL = "istio-injection"
NATIVE_SIDECAR_ANNOTATION = "sidecar.istio.io/nativeSidecar"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
# What Istio's Prometheus (samples/addons/prometheus.yaml, job kubernetes-pods) scrapes a pod by.
PROMETHEUS_ANNOTATIONS = ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path")
MERGE_METRICS_ANNOTATION = "prometheus.istio.io/merge-metrics"
CANONICAL_NAME_LABEL = "service.istio.io/canonical-name"
CANONICAL_REVISION_LABEL = "service.istio.io/canonical-revision"
INCLUDE_INBOUND_PORTS = "traffic.sidecar.istio.io/includeInboundPorts"
EXCLUDE_INBOUND_PORTS = "traffic.sidecar.istio.io/excludeInboundPorts"
EXCLUDE_OUTBOUND_PORTS = "traffic.sidecar.istio.io/excludeOutboundPorts"
EXCLUDE_OUTBOUND_IP_RANGES = "traffic.sidecar.istio.io/excludeOutboundIPRanges"

# Istio's names (pkg/kube/inject/inject.go ProxyContainerName, InitContainerName): `kubectl logs
# deploy/x -c istio-proxy` and the tools that assume them work as they do with Istio.
PROXY_CONTAINER = "istio-proxy"
INIT_CONTAINER = "istio-init"
# Names of a proxy container in a pod: ours, and the one tracemesh used before it took Istio's.
PROXY_CONTAINER_NAMES = frozenset({PROXY_CONTAINER, "tracemesh-proxy"})
TMP_VOLUME = "tracemesh-tmp"
HEALTH_PORT = 15021
PROMETHEUS_PORT = 15090
DEFAULT_IMAGE = "docker.io/tracemesh/proxy:0.1.0"  # full name: what `kind load` and podman store it as
DEFAULT_DISCOVERY_ADDRESS = "tracemesh-discovery.istio-system.svc:15010"


@dataclass(frozen=True, slots=True)
class InjectionSettings:
    proxy_image: str = DEFAULT_IMAGE
    init_image: str = DEFAULT_IMAGE  # the proxy image carries iptables and `tracemesh iptables`
    image_pull_policy: str = "IfNotPresent"
    # Kubernetes >= 1.29: the proxy as an init container with restartPolicy Always, started
    # before and stopped after the app (and the app's own init containers are traced too).
    # Istio's ENABLE_NATIVE_SIDECARS; the pod annotation sidecar.istio.io/nativeSidecar wins.
    native_sidecar: bool = True
    # Without native sidecars: Istio's values.global.proxy.holdApplicationUntilProxyStarts (the MeshConfig's
    # defaultConfig and the pod's proxy.istio.io/config annotation can turn it on too).
    hold_application_until_proxy_starts: bool = False
    # The MeshConfig's defaultConfig (a ProxyConfig), under each pod's proxy.istio.io/config annotation.
    mesh_default_config: Mapping[str, Any] = field(default_factory=dict)
    discovery_address: str = DEFAULT_DISCOVERY_ADDRESS
    revision: str = "default"
    proxy_requests: tuple[tuple[str, str], ...] = (("cpu", "100m"), ("memory", "128Mi"))
    proxy_limits: tuple[tuple[str, str], ...] = (("cpu", "2"), ("memory", "1Gi"))
    init_requests: tuple[tuple[str, str], ...] = (("cpu", "10m"), ("memory", "40Mi"))
    init_limits: tuple[tuple[str, str], ...] = (("cpu", "500m"), ("memory", "128Mi"))


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str


@dataclass(frozen=True, slots=True)
class Mutation:
    patch: list[dict[str, Any]]
    status: dict[str, Any]  # what the sidecar.istio.io/status annotation says


def injection_skip_reason(pod: Mapping[str, Any], namespace_labels: Mapping[str, str]) -> str | None:
    """None when the pod is to be injected, else why not."""
    metadata = _mapping(pod.get("metadata"))
    annotations = _mapping(metadata.get("annotations"))
    labels = pod_labels(pod)
    if STATUS_ANNOTATION in annotations:
        return f"already injected (annotation {STATUS_ANNOTATION} is present)"
    proxy = proxy_container_name(pod)
    if proxy is not None:
        return f"already has a proxy container ({proxy!r})"
    if _mapping(pod.get("spec")).get("hostNetwork") is True:
        return "hostNetwork pod: capture rules would apply to the node's network"
    # The annotation form is Istio's older opt-out, still honoured so existing manifests keep working.
    if labels.get(INJECT_LABEL) == "false" or annotations.get(INJECT_LABEL) == "false":
        return f'pod opts out ({INJECT_LABEL}: "false")'
    namespace_setting = namespace_labels.get(NAMESPACE_LABEL)
    if namespace_setting == "disabled":
        return f"namespace opts out ({NAMESPACE_LABEL}=disabled)"
    if namespace_setting == "enabled" or labels.get(INJECT_LABEL) == "true":
        return None
    return f'not asked for: no {NAMESPACE_LABEL}=enabled namespace label, no {INJECT_LABEL}: "true" pod label'


def proxy_container_name(pod: Mapping[str, Any]) -> str | None:
    """The name of the pod's proxy container (an init container when native), or None."""
    spec = _mapping(pod.get("spec"))
    for container in [*_list(spec.get("initContainers")), *_list(spec.get("containers"))]:
        name = _mapping(container).get("name")
        if isinstance(name, str) and name in PROXY_CONTAINER_NAMES:
            return name
    return None


def inject(pod: Mapping[str, Any], namespace_labels: Mapping[str, str],
           settings: InjectionSettings) -> Mutation | Skip:
    """Raises ConfigError naming the annotation when an interception annotation is malformed."""
    reason = injection_skip_reason(pod, namespace_labels)
    if reason is not None:
        return Skip(reason)
    metadata = _mapping(pod.get("metadata"))
    spec = _mapping(pod.get("spec"))
    annotations = _mapping(metadata.get("annotations"))
    native = _native_sidecar(annotations, settings)
    proxy_config = pod_proxy_config(settings.mesh_default_config, annotations,
                                    settings.hold_application_until_proxy_starts)
    hold = proxy_config.hold_application and not native
    app_ports = _app_ports(pod, annotations)
    labels = pod_labels(pod)
    service, revision = canonical_service(pod), canonical_revision(pod)
    # Like Istio: the canonical names become labels, so every tool reads the same ones off the pod.
    added_labels = {key: value for key, value in ((CANONICAL_NAME_LABEL, service), (CANONICAL_REVISION_LABEL, revision))
                    if key not in labels}
    proxy = _proxy_container(settings, native, hold, proxy_config, app_ports, (service, revision),
                             {**labels, **added_labels})
    init = _init_container(settings, annotations, app_ports)
    status = {
        "initContainers": [INIT_CONTAINER, PROXY_CONTAINER] if native else [INIT_CONTAINER],
        "containers": [] if native else [PROXY_CONTAINER],
        "volumes": [TMP_VOLUME],
        "imagePullSecrets": None,
        "revision": settings.revision,
    }
    new_annotations = {STATUS_ANNOTATION: json.dumps(status, separators=(",", ":")), **_prometheus(annotations)}
    app_containers = _list(spec.get("containers"))
    if DEFAULT_CONTAINER_ANNOTATION not in annotations and app_containers:
        # `kubectl logs/exec` keep meaning the application, not the proxy placed before it.
        new_annotations[DEFAULT_CONTAINER_ANNOTATION] = str(_mapping(app_containers[0]).get("name", ""))

    patch = [] if isinstance(pod.get("metadata"), Mapping) else [add("/metadata", {})]
    patch += _add_metadata(metadata, "annotations", new_annotations)
    patch += _add_metadata(metadata, "labels", added_labels)
    patch += _append(spec, "volumes", [{"name": TMP_VOLUME, "emptyDir": {"medium": "Memory"}}])
    if native:
        # First the capture rules, then the proxy: the app's own init containers run behind both.
        patch += _insert_front(spec, "initContainers", [init, proxy])
    else:
        # Without native sidecars nothing would serve captured traffic during the app's init
        # containers, so the capture rules go in last and those run outside the mesh instead.
        patch += _append(spec, "initContainers", [init])
        if hold:
            # First container: the kubelet holds the next container until its postStart hook returns.
            patch += _insert_front(spec, "containers", [proxy])
        else:
            # Last, as Istio's reorderPod puts it: tools that take the first container keep the app's.
            patch += _append(spec, "containers", [proxy])
    return Mutation(patch=patch, status=status)


def _prometheus(annotations: Mapping[str, Any]) -> dict[str, str]:
    """pkg/kube/inject/webhook.go applyPrometheusMerge, less the merge: Istio points the scrape annotations at the
    agent (15020), which merges the app's metrics (named by the app's own annotations) with Envoy's. tracemesh has
    no merging agent, so the annotations name the proxy's own exposition (15090 /stats/prometheus) and only when
    the pod has none of its own (which then keep its app's metrics scraped) and has not turned merging off."""
    if str(annotations.get(MERGE_METRICS_ANNOTATION, "")).lower() == "false":
        return {}
    if any(key in annotations for key in PROMETHEUS_ANNOTATIONS):
        return {}
    return dict(zip(PROMETHEUS_ANNOTATIONS, ("true", str(PROMETHEUS_PORT), "/stats/prometheus"), strict=True))


def _proxy_container(settings: InjectionSettings, native: bool, hold: bool, proxy_config: PodProxyConfig,
                     app_ports: list[int], canonical: tuple[str, str], labels: Mapping[str, str]) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": PROXY_CONTAINER,
        "image": settings.proxy_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["tracemesh"],
        "args": ["proxy", "--discovery", settings.discovery_address, "--bootstrap-env"],
        "env": [
            *bootstrap_env(canonical, labels, app_ports),
            {"name": ENV_PROXY_CONFIG, "value": proxy_config.json},
            *({"name": name, "value": value} for name, value in proxy_config.metadata),
        ],
        "ports": [
            {"name": "http-envoy-prom", "containerPort": PROMETHEUS_PORT, "protocol": "TCP"},
            {"name": "http-health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": _ready_probe(period_s=2, failures=30),
        "resources": {"requests": dict(settings.proxy_requests), "limits": dict(settings.proxy_limits)},
        "securityContext": {
            "runAsUser": PROXY_UID, "runAsGroup": PROXY_UID, "runAsNonRoot": True,
            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False, "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            # With the above, the proxy meets the `restricted` Pod Security Standard on its own (docs/pod-security.md).
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
    }
    if native:
        container["restartPolicy"] = "Always"
        # The kubelet starts the next container only once this passes: the app never runs unproxied.
        container["startupProbe"] = _ready_probe(period_s=1, failures=600)
        # Called when the pod starts shutting down: drain inbound at once; SIGTERM comes once the apps have
        # exited, and the proxy then stops without a drain period of its own (Istio's template).
        container["lifecycle"] = {"preStop": {"exec": {"command": ["python", "-m", "tracemesh_sidecar.drain_request"]}}}
    elif hold:
        container["lifecycle"] = {"postStart": {"exec": {
            "command": ["python", "-m", "tracemesh_sidecar.discovery.wait_ready", "--timeout", "600"]}}}
    return container


def _ready_probe(period_s: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": "/healthz/ready", "port": HEALTH_PORT}, "periodSeconds": period_s,
            "timeoutSeconds": 3, "failureThreshold": failures}


def _init_container(settings: InjectionSettings, annotations: Mapping[str, Any],
                    app_ports: list[int]) -> dict[str, Any]:
    # The annotations are checked here, with the capture rules' own parsers, so a mistake stops
    # the pod at admission naming the annotation instead of failing its init container later.
    include = str(annotations.get(INCLUDE_INBOUND_PORTS, "")).strip()
    args = ["iptables", "--proxy-uid", str(PROXY_UID),
            "--inbound-ports", ALL_PORTS if include == ALL_PORTS else _join(app_ports)]
    for flag, annotation in (("--exclude-inbound-ports", EXCLUDE_INBOUND_PORTS),
                             ("--exclude-outbound-ports", EXCLUDE_OUTBOUND_PORTS)):
        if ports := parse_ports(str(annotations.get(annotation, "")), _annotation_field(annotation)):
            args += [flag, _join(ports)]
    ranges = parse_ip_ranges(str(annotations.get(EXCLUDE_OUTBOUND_IP_RANGES, "")),
                             _annotation_field(EXCLUDE_OUTBOUND_IP_RANGES))
    if ranges:
        args += ["--exclude-outbound-ip-ranges", ",".join(ranges)]
    return {
        "name": INIT_CONTAINER,
        "image": settings.init_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["tracemesh"],
        "args": args,
        "resources": {"requests": dict(settings.init_requests), "limits": dict(settings.init_limits)},
        "securityContext": {
            # Root for iptables, but only the two network capabilities, and no way to gain more.
            "runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False, "privileged": False,
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},  # iptables-restore needs no syscall it filters
        },
    }


def _native_sidecar(annotations: Mapping[str, Any], settings: InjectionSettings) -> bool:
    value = annotations.get(NATIVE_SIDECAR_ANNOTATION)
    if value is None:
        return settings.native_sidecar
    if value not in ("true", "false"):
        raise ConfigError(_annotation_field(NATIVE_SIDECAR_ANNOTATION), f"is {value!r}",
                          'write "true" or "false"')
    return bool(value == "true")


def _app_ports(pod: Mapping[str, Any], annotations: Mapping[str, Any]) -> list[int]:
    """The ports the proxy fronts: the includeInboundPorts list when given, else the containers' ports."""
    include = str(annotations.get(INCLUDE_INBOUND_PORTS, "")).strip()
    if include and include != ALL_PORTS:
        return list(parse_ports(include, _annotation_field(INCLUDE_INBOUND_PORTS)))
    return [entry.port for entry in inbound_ports(pod)]


def _annotation_field(name: str) -> str:
    return f"metadata.annotations[{name!r}]"


def _join(ports: Sequence[int]) -> str:
    return ",".join(str(port) for port in ports)


def bootstrap_env(canonical: tuple[str, str], labels: Mapping[str, str], app_ports: Sequence[int],
                  ) -> list[dict[str, Any]]:
    """What a proxy reads at start (`--bootstrap-env`): the pod from the downward API, its canonical service and
    revision, labels and application ports. Sidecars and gateways alike."""
    return [
        _field_env(ENV_POD_NAME, "metadata.name"),
        _field_env(ENV_NAMESPACE, "metadata.namespace"),
        _field_env(ENV_POD_IP, "status.podIP"),
        _field_env(ENV_SERVICE_ACCOUNT, "spec.serviceAccountName"),
        {"name": ENV_CANONICAL_SERVICE, "value": canonical[0]},
        {"name": ENV_CANONICAL_REVISION, "value": canonical[1]},
        # Labels as of admission, like Istio's ISTIO_METAJSON_LABELS; the operator's pushes carry live ones.
        {"name": ENV_LABELS, "value": json.dumps(dict(sorted(labels.items())), separators=(",", ":"))},
        {"name": ENV_APP_PORTS, "value": _join(app_ports)},
    ]


def _field_env(name: str, field_path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field_path}}}


def _add_metadata(metadata: Mapping[str, Any], key: str, entries: Mapping[str, str]) -> list[dict[str, Any]]:
    """Adds map entries, creating the map when the pod has none (a pointer into a missing map fails)."""
    if not entries:
        return []
    if not isinstance(metadata.get(key), Mapping):
        return [add(pointer("metadata", key), dict(entries))]
    return [add(pointer("metadata", key, name), value) for name, value in entries.items()]


def _append(spec: Mapping[str, Any], key: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not isinstance(spec.get(key), list):
        return [add(pointer("spec", key), items)]
    return [add(pointer("spec", key, "-"), item) for item in items]


def _insert_front(spec: Mapping[str, Any], key: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not isinstance(spec.get(key), list):
        return [add(pointer("spec", key), items)]
    return [add(pointer("spec", key, index), item) for index, item in enumerate(items)]


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
