"""The operator's memory between events, and what each event changes.

kopf's indexes hold the objects (pods, Telemetry, MeshConfig) as they are now; MeshState adds
what only history can tell: each resource's last good version, and the Ready condition last
written. Each event recompiles only the pods it can affect and hands every result to the
ConfigHub, which versions a config only when it really changed. The methods return the status
updates to write; the kopf shell in `handlers` does the writing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tracemesh_operator.compiler import CompiledTelemetry, Problem, compile_telemetry, read_mesh, read_telemetry
from tracemesh_operator.compiler.compile import conflict_problem, pick_oldest
from tracemesh_operator.compiler.gateway_api import (
    is_istio_gateway,
    parent_gateways,
    read_http_route,
    read_k8s_gateway,
)
from tracemesh_operator.compiler.mesh import NO_ENVIRONMENT, MeshTracing
from tracemesh_operator.compiler.networking import (
    CLUSTER_DOMAIN,
    GatewayRules,
    RoutingRules,
    SubsetRules,
    read_destination_rule,
    read_gateway,
    read_virtual_service,
)
from tracemesh_operator.compiler.route_tables import (
    compile_gateway_routes,
    compile_sidecar_routes,
    unresolved_destinations,
)
from tracemesh_operator.compiler.services import Subsets, service_registry
from tracemesh_operator.compiler.telemetry import TelemetryRules, match_labels
from tracemesh_operator.conditions import HONOURED, TYPES, Condition
from tracemesh_operator.gateway_api_status import attached_routes, gateway_status, route_status, without_times
from tracemesh_operator.mesh_source import MeshSource, mesh_source
from tracemesh_operator.records import object_key
from tracemesh_operator.workload import inbound_ports, is_router, pod_labels, proxy_config_for_pod
from tracemesh_sidecar.config import ProxyConfig, ServiceEntry

# The one MeshConfig that configures the mesh, where Istio keeps its `istio` ConfigMap.
DEFAULT_MESH_CONFIG = "istio-system/default"
Body = Mapping[str, Any]


class ConfigSink(Protocol):
    """The part of the ConfigHub the state drives."""

    def set(self, pod_key: str, config: ProxyConfig) -> ProxyConfig: ...

    def remove(self, pod_key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class World:
    """The objects as they are now (kopf indexes, or plain dicts in tests)."""

    pods: Mapping[str, Iterable[Body]]  # injected pods by namespace
    telemetries: Mapping[str, Iterable[Body]]  # by namespace
    meshconfigs: Mapping[str, Iterable[Body]]  # by `namespace/name`
    # Istio's mesh ConfigMaps (`istio` in the root namespace, as Helm installs it) by `namespace/name`
    mesh_configmaps: Mapping[str, Iterable[Body]] = field(default_factory=dict)
    services: Mapping[str, Iterable[Body]] = field(default_factory=dict)  # by `namespace/name`
    endpoint_slices: Mapping[str, Iterable[Body]] = field(default_factory=dict)  # by their Service's `namespace/name`
    # Istio's networking API and the Gateway API, each by namespace
    gateways: Mapping[str, Iterable[Body]] = field(default_factory=dict)  # networking.istio.io Gateways
    virtual_services: Mapping[str, Iterable[Body]] = field(default_factory=dict)
    destination_rules: Mapping[str, Iterable[Body]] = field(default_factory=dict)
    k8s_gateways: Mapping[str, Iterable[Body]] = field(default_factory=dict)  # gateway.networking.k8s.io Gateways
    http_routes: Mapping[str, Iterable[Body]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Networking:
    """The routing resources in force (each one's latest version, or its last good one), read."""

    gateways: tuple[GatewayRules, ...]
    routing: tuple[RoutingRules, ...]  # VirtualServices and HTTPRoutes, oldest first
    subsets: Mapping[str, Subsets]  # DestinationRule subsets by host; the oldest rule of a host wins


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    body: Body  # the object as last seen (identity and current status)
    condition: Condition  # Ready: in force or not
    honoured: Condition  # Honoured: is every field it sets acted on

    @property
    def conditions(self) -> tuple[Condition, Condition]:
        return self.condition, self.honoured


def _honoured(notices: Iterable[Problem]) -> Condition:
    found = list(notices)
    if not found:
        return Condition(True, "AllFieldsHonoured", "every field it sets is acted on", HONOURED)
    return Condition(False, found[0].reason, "; ".join(notice.message for notice in found), HONOURED)


def _not_in_force(reason: str) -> Condition:
    return Condition(False, reason, "nothing of this version is in force (see the Ready condition)", HONOURED)


def _namespace(body: Body) -> str:
    return str(body.get("metadata", {}).get("namespace") or "")


def _incarnation(body: Body) -> str:
    """One object's life: a resource deleted and created again under its name is another."""
    metadata = body.get("metadata", {})
    return f"{body.get('kind')}:{object_key(body)}:{metadata.get('uid') or metadata.get('creationTimestamp')}"


class MeshState:
    def __init__(self, hub: ConfigSink, discovery_address: str | None,
                 mesh_config: str = DEFAULT_MESH_CONFIG, environ: Mapping[str, str] = NO_ENVIRONMENT) -> None:
        self._hub = hub
        self._mesh_config = mesh_config
        self._environ = environ  # the operator's environment: provider headers' envName are read there
        self._discovery_address = discovery_address
        self._last_good_mesh: MeshSource | None = None
        self._last_good: dict[str, Body] = {}  # Telemetry key -> its last version that compiled
        self._handled_specs: dict[str, Any] = {}  # Telemetry key -> spec last acted on (skips status-only events)
        self._selector_conflicts: dict[str, tuple[Problem, ...]] = {}  # pod key -> its selector conflicts
        self._written: dict[str, tuple[Condition, ...]] = {}  # object incarnation -> conditions last written
        # The service registry every sidecar gets, compiled once per Service/EndpointSlice change
        # (None: not yet compiled), and shared by all pods' configs.
        self._registry: tuple[ServiceEntry, ...] | None = None
        # What of the Services names pods' inbound ports (selectors, ports, ages), as last pushed.
        self._selections: tuple[str, ...] | None = None
        self._last_good_routing: dict[str, Body] = {}  # networking resource key -> its last version that read
        self._routing_specs: dict[str, Any] = {}  # networking resource key -> the spec last compiled
        self._workload_specs: dict[str, Any] = {}  # Gateway API Gateway key -> what its workload was written from

    # -- events ------------------------------------------------------------------------------------

    def mesh_changed(self, world: World) -> list[StatusUpdate]:
        """A MeshConfig or Istio's mesh ConfigMap was added, changed or deleted: every pod may be affected."""
        latest = self._latest_mesh(world)
        if latest is not None and self._sound(latest):
            self._last_good_mesh = latest
        elif latest is None:
            self._last_good_mesh = None
        self._push(self._all_pods(world), world)
        updates = [self._mesh_update(body, world) for bodies in world.meshconfigs.values() for body in bodies]
        updates += [self._telemetry_update(body, world) for bodies in world.telemetries.values() for body in bodies]
        return self._changed(updates)

    def telemetry_changed(self, body: Body, deleted: bool, world: World) -> list[StatusUpdate]:
        key, namespace = object_key(body), _namespace(body)
        previous_spec = self._handled_specs.get(key)
        spec = None if deleted else body.get("spec")
        if deleted:
            self._last_good.pop(key, None)
            self._handled_specs.pop(key, None)
            self._written.pop(_incarnation(body), None)
        elif spec != previous_spec or key not in self._handled_specs:
            self._handled_specs[key] = spec
            if not isinstance(read_telemetry(body, self._mesh(world)), Problem):
                self._last_good[key] = body
        else:
            # Our own status write (or a label change) came back as an event: nothing to recompile.
            return self._changed([self._telemetry_update(body, world)])
        self._push(self._touched_pods(namespace, [previous_spec, spec], world), world)
        return self._changed([self._telemetry_update(other, world) for other in world.telemetries.get(namespace, ())])

    def services_changed(self, world: World) -> None:
        """A Service or EndpointSlice was added, changed or deleted: every sidecar gets the new registry, and the
        pods a Service selects their inbound ports named after it.

        Nothing is pushed when neither changed (a status-only or unrelated change)."""
        previous = (self._registry, self._selections)
        self._registry = self._compile_registry(world)
        self._selections = _selections(world)
        if (self._registry, self._selections) != previous:
            self._push(self._all_pods(world), world)

    def _compile_registry(self, world: World) -> tuple[ServiceEntry, ...]:
        return service_registry((service for bodies in world.services.values() for service in bodies),
                                world.endpoint_slices, subsets=self._networking(world).subsets,
                                pod_labels=_labels_by_pod(self._all_pods(world)))

    def networking_changed(self, body: Body, deleted: bool, world: World) -> list[StatusUpdate]:
        """A Gateway, VirtualService, DestinationRule or HTTPRoute was added, changed or deleted: every proxy's
        routes may change (and with DestinationRules the registry's subsets)."""
        key = _routing_key(body)
        if deleted:
            self._last_good_routing.pop(key, None)
            self._routing_specs.pop(key, None)
            self._written.pop(_incarnation(body), None)
        elif self._routing_specs.get(key) == (spec := body.get("spec")):
            # Our own status write (or a label change) came back as an event: nothing to recompile.
            return self.networking_statuses(world)
        else:
            self._routing_specs[key] = spec
        self._registry = self._compile_registry(world)
        self._selections = _selections(world)
        self._push(self._all_pods(world), world)
        return self.networking_statuses(world)

    def networking_statuses(self, world: World) -> list[StatusUpdate]:
        """The Ready and Honoured conditions of Istio's networking resources that changed."""
        if not any(world.virtual_services.values()) and not any(world.gateways.values()) and not any(
                world.destination_rules.values()):
            return []
        # The Services' ports as they are now (the registry's push is debounced): destinations resolve against them.
        registry = service_registry((service for bodies in world.services.values() for service in bodies), {})
        updates = []
        for bodies, reader in ((world.gateways, read_gateway), (world.virtual_services, read_virtual_service),
                               (world.destination_rules, read_destination_rule)):
            for body in (body for namespace_bodies in bodies.values() for body in namespace_bodies):
                read = reader(body)
                if isinstance(read, Problem):
                    kept = ("its previous version stays in force" if _routing_key(body) in self._last_good_routing
                            else "it is ignored until it is fixed")
                    updates.append(StatusUpdate(body, Condition(False, read.reason, f"{read.message} ({kept})"),
                                                _not_in_force(read.reason)))
                    continue
                notices = list(read.notices)
                if isinstance(read, RoutingRules):
                    notices += unresolved_destinations(read, registry)
                updates.append(StatusUpdate(body, Condition(True, "Accepted", "the configuration is in force"),
                                            _honoured(notices)))
        return self._changed(updates)

    def gateway_api_statuses(self, world: World, now: str) -> list[tuple[Body, dict[str, Any]]]:
        """The status of each Gateway of class `istio` and each HTTPRoute naming one, where it differs (lastTransition
        times aside) from what the object carries."""
        gateways = {object_key(body): body for bodies in world.k8s_gateways.values() for body in bodies
                    if is_istio_gateway(body)}
        if not gateways:
            return []
        # Services by host, as they are now: an HTTPRoute's backends resolve against them.
        services = {f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}" for namespace, _, name in (
            key.partition("/") for key in world.services)}
        routes = [body for bodies in world.http_routes.values() for body in bodies]
        result = []
        for key, gateway in gateways.items():
            service = next(iter(world.services.get(f"{key}-istio", ())), None)
            # Its own endpoints as they are now, not as last pushed (the registry push is debounced).
            endpoints = service_registry([service], world.endpoint_slices) if service is not None else ()
            status = gateway_status(gateway, service, endpoints, attached_routes(key, gateway, routes), now)
            result.append((gateway, status))
        for route in routes:
            if any(key in gateways for _, key in parent_gateways(route)):
                read = read_http_route(route)
                status = route_status(route, None if isinstance(read, Problem) else read, gateways, services, now)
                result.append((route, status))
        return [(body, status) for body, status in result if without_times(status) != without_times(
            {key: (body.get("status") or {}).get(key) for key in status})]

    def gateway_workload_due(self, body: Body, deleted: bool) -> bool:
        """Whether a Gateway API Gateway's Deployment and Service must be (re)written: it is of class istio and its
        spec or annotations changed since they were last written (status-only events write nothing)."""
        key = _routing_key(body)
        if deleted or not is_istio_gateway(body):
            self._workload_specs.pop(key, None)
            return False
        wanted = (body.get("spec"), (body.get("metadata") or {}).get("annotations"),
                  (body.get("metadata") or {}).get("uid"))
        if self._workload_specs.get(key) == wanted:
            return False
        self._workload_specs[key] = wanted
        return True

    def gateway_workload_failed(self, body: Body) -> None:
        """Writing the workload failed: the Gateway's next event tries again."""
        self._workload_specs.pop(_routing_key(body), None)

    def _effective_routing(self, bodies: Mapping[str, Iterable[Body]], reader: Any) -> list[Any]:
        """Each resource's latest version if it reads, else its last good one (if any)."""
        result = []
        for body in (body for namespace_bodies in bodies.values() for body in namespace_bodies):
            key, read = _routing_key(body), reader(body)
            if not isinstance(read, Problem):
                self._last_good_routing[key] = body
                result.append(read)
            elif (good := self._last_good_routing.get(key)) is not None:
                result.append(reader(good))
        return result

    def _networking(self, world: World) -> Networking:
        gateways: list[GatewayRules] = self._effective_routing(world.gateways, read_gateway)
        gateways += self._effective_routing(
            {namespace: [body for body in bodies if is_istio_gateway(body)]
             for namespace, bodies in world.k8s_gateways.items()}, read_k8s_gateway)
        routing: list[RoutingRules] = self._effective_routing(world.virtual_services, read_virtual_service)
        routing += self._effective_routing(world.http_routes, read_http_route)
        rules: list[SubsetRules] = self._effective_routing(world.destination_rules, read_destination_rule)
        subsets: dict[str, Subsets] = {}
        for rule in sorted(rules, key=lambda r: (r.created, r.namespace, r.name)):
            subsets.setdefault(rule.host, rule.subsets)
        return Networking(tuple(gateways), tuple(sorted(routing, key=lambda r: (r.created, r.namespace, r.name))),
                          subsets)

    def pod_changed(self, body: Body, deleted: bool, world: World) -> list[StatusUpdate]:
        key, namespace = object_key(body), _namespace(body)
        before = self._selector_conflicts.get(key, ())
        if deleted:
            self._hub.remove(key)
            self._selector_conflicts.pop(key, None)
        else:
            self._push([body], world)
        if self._selector_conflicts.get(key, ()) == before:
            return []
        return self._changed([self._telemetry_update(other, world) for other in world.telemetries.get(namespace, ())])

    # -- compiling and pushing ---------------------------------------------------------------------

    def _latest_mesh(self, world: World) -> MeshSource | None:
        return mesh_source(world.meshconfigs, world.mesh_configmaps, self._mesh_config)

    def _read_mesh(self, spec: Mapping[str, Any]) -> MeshTracing:
        return read_mesh(spec, self._environ)

    def mesh_spec(self, world: World) -> Mapping[str, Any]:
        """The mesh config in force: the latest if it is sound or nothing better is known, else the last good."""
        latest = self._latest_mesh(world)
        if latest is None:
            return {}
        chosen = latest
        if self._last_good_mesh is not None and not self._sound(latest):
            chosen = self._last_good_mesh
        return chosen.spec

    def _sound(self, source: MeshSource) -> bool:
        return source.error is None and not self._read_mesh(source.spec).problems

    def configmap_report(self, world: World) -> list[str]:
        """What is wrong with, or not acted on in, Istio's mesh ConfigMap when it is the mesh config in force.

        A ConfigMap has no status to write conditions into: the shell turns these into Warning Events.
        """
        source = self._latest_mesh(world)
        if source is None or not source.resource.startswith("ConfigMap"):
            return []
        if source.error is not None:
            kept = "the previous mesh config stays in force" if self._last_good_mesh else "no mesh config is in force"
            return [f"{source.resource} {source.error} ({kept})"]
        mesh = self._read_mesh(source.spec)
        return [f"{source.resource}: {item.message}" for item in (*mesh.problems, *mesh.notices)]

    def _mesh(self, world: World) -> MeshTracing:
        return self._read_mesh(self.mesh_spec(world))

    def _effective_telemetries(self, namespace: str, world: World, mesh: MeshTracing) -> list[Body]:
        """A namespace's Telemetry in force: each one's latest version, or its last good one if the latest is broken."""
        result = []
        for body in world.telemetries.get(namespace, ()):
            if not isinstance(read_telemetry(body, mesh), Problem):
                # Also after a MeshConfig change made a rejected version valid: it is the last good one now.
                self._last_good[object_key(body)] = body
                result.append(body)
            elif (good := self._last_good.get(object_key(body))) is not None:
                result.append(good)
        return result

    def _all_pods(self, world: World) -> list[Body]:
        return [pod for pods in world.pods.values() for pod in pods]

    def _touched_pods(self, namespace: str, specs: Iterable[Any], world: World) -> list[Body]:
        mesh = self._mesh(world)
        selectors = [match_labels(spec) for spec in specs if spec is not None]
        if any(selector is None for selector in selectors):
            return self._all_pods(world) if namespace == mesh.root_namespace else list(world.pods.get(namespace, ()))
        return [pod for pod in world.pods.get(namespace, ())
                if any(selector is not None and _matches(selector, pod_labels(pod)) for selector in selectors)]

    def _push(self, pods: Iterable[Body], world: World) -> None:
        mesh_spec = self.mesh_spec(world)
        mesh = self._read_mesh(mesh_spec)
        telemetries: dict[str, list[Body]] = {}
        compiled: dict[tuple[str, frozenset[tuple[str, str]]], CompiledTelemetry] = {}
        if self._registry is None:
            self._registry = self._compile_registry(world)
            self._selections = _selections(world)
        namespace_services: dict[str, list[Body]] = {}
        networking = self._networking(world)
        sidecar_routes = compile_sidecar_routes(networking.routing, self._registry)
        for pod in pods:
            namespace, labels = _namespace(pod), pod_labels(pod)
            if namespace not in namespace_services:
                namespace_services[namespace] = [service for key, bodies in world.services.items()
                                                 if key.partition("/")[0] == namespace for service in bodies]
            # Replicas share their labels: one compile serves them all.
            cache_key = (namespace, frozenset(labels.items()))
            result = compiled.get(cache_key)
            if result is None:
                for scope in {mesh.root_namespace, namespace} - telemetries.keys():
                    telemetries[scope] = self._effective_telemetries(scope, world, mesh)
                scoped = telemetries[mesh.root_namespace] + (
                    telemetries[namespace] if namespace != mesh.root_namespace else [])
                result = compiled[cache_key] = compile_telemetry(mesh_spec, scoped, namespace, labels, self._environ)
            key = object_key(pod)
            conflicts = tuple(p for p in result.problems if p.reason == "ConflictingSelector")
            if conflicts:
                self._selector_conflicts[key] = conflicts
            else:
                self._selector_conflicts.pop(key, None)
            routes = sidecar_routes
            if is_router(pod):
                # A gateway server port that is a port of a Service selecting the pod binds its targetPort.
                target_ports = {port.service_port: port.port for port in inbound_ports(
                    pod, namespace_services[namespace]) if port.service_port is not None}
                routes = compile_gateway_routes(namespace, labels, target_ports, networking.gateways,
                                                networking.routing, self._registry)
            self._hub.set(key, proxy_config_for_pod(pod, result, mesh_spec, self._discovery_address, "0",
                                                    services=self._registry,
                                                    namespace_services=namespace_services[namespace],
                                                    routes=routes))

    # -- status ------------------------------------------------------------------------------------

    def _changed(self, updates: Iterable[StatusUpdate]) -> list[StatusUpdate]:
        """Only the conditions that differ from what the object carries (or what was written since)."""
        result = []
        for update in updates:
            key = _incarnation(update.body)
            current: tuple[Condition | None, ...] | None = self._written.get(key)
            if current is None:
                current = tuple(Condition.observed(update.body, kind) for kind in TYPES)
            if update.conditions != current:
                self._written[key] = update.conditions
                result.append(update)
        return result

    def status_not_written(self, update: StatusUpdate) -> None:
        """The write of `update` failed: ask for it again on the object's next event."""
        if self._written.get(_incarnation(update.body)) == update.conditions:
            del self._written[_incarnation(update.body)]

    def _mesh_update(self, body: Body, world: World) -> StatusUpdate:
        if object_key(body) != self._mesh_config:
            return StatusUpdate(body, Condition(False, "NotUsed", (
                f"only the MeshConfig {self._mesh_config} configures the mesh; "
                f"put these settings into it and delete this one")), _not_in_force("NotUsed"))
        mesh = self._read_mesh(body.get("spec") or {})
        latest = self._latest_mesh(world)
        shadowed = latest.shadowed if latest is not None else None
        if not mesh.problems:
            note = f"; {shadowed}" if shadowed else ""
            return StatusUpdate(body, Condition(True, "Accepted", f"the mesh configuration is in force{note}"),
                                _honoured(mesh.notices))
        kept = ("the previous MeshConfig stays in force" if self._last_good_mesh is not None
                else "the rest of this MeshConfig is in force")
        ready = Condition(False, mesh.problems[0].reason, "; ".join(p.message for p in mesh.problems) + f" ({kept})")
        return StatusUpdate(body, ready, _honoured(mesh.notices))

    def _telemetry_update(self, body: Body, world: World) -> StatusUpdate:
        mesh = self._mesh(world)
        read = read_telemetry(body, mesh)
        if isinstance(read, Problem):
            kept = ("its previous version stays in force" if object_key(body) in self._last_good
                    else "it is ignored until it is fixed")
            return StatusUpdate(body, Condition(False, read.reason, f"{read.message} ({kept})"),
                                _not_in_force(read.reason))
        conflict = self._conflict(read, world, mesh)
        if conflict is not None:
            return StatusUpdate(body, Condition(False, conflict.reason, conflict.message),
                                _not_in_force(conflict.reason))
        return StatusUpdate(body, Condition(True, "Accepted", "the configuration is in force"),
                            _honoured(read.notices))

    def _conflict(self, telemetry: TelemetryRules, world: World, mesh: MeshTracing) -> Problem | None:
        resource = telemetry.resource
        if telemetry.selector is None and not telemetry.targeted:
            peers = [read for body in self._effective_telemetries(telemetry.namespace, world, mesh)
                     if not isinstance(read := read_telemetry(body, mesh), Problem)
                     and read.selector is None and not read.targeted]
            winner, _ = pick_oldest(peers)
            if winner is not None and winner.resource != resource:
                return conflict_problem(telemetry, winner, "namespace")
        for key, problems in self._selector_conflicts.items():
            if key.startswith(f"{telemetry.namespace}/"):
                for problem in problems:
                    if problem.resource == resource:
                        return problem
        return None


def _labels_by_pod(pods: Iterable[Body]) -> dict[str, dict[str, str]]:
    """Each pod's labels by `namespace/name` and by its IP: what puts an endpoint into DestinationRule subsets."""
    found = {}
    for pod in pods:
        labels = pod_labels(pod)
        found[object_key(pod)] = labels
        if ip := (pod.get("status") or {}).get("podIP"):
            found[str(ip)] = labels
    return found


def _routing_key(body: Body) -> str:
    """A networking resource's identity across versions: the two `Gateway` kinds differ by API group."""
    return f"{str(body.get('apiVersion') or '').partition('/')[0]}/{body.get('kind')}:{object_key(body)}"


def _selections(world: World) -> tuple[str, ...]:
    """Every Service's say in naming pods' inbound ports, comparable between events."""
    return tuple(sorted(repr((key, body.get("metadata", {}).get("creationTimestamp"), (body.get("spec") or {}).get(
        "type"), (body.get("spec") or {}).get("selector"), (body.get("spec") or {}).get("ports")))
        for key, bodies in world.services.items() for body in bodies))


def _matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    return all(labels.get(str(k)) == str(v) for k, v in selector.items())
