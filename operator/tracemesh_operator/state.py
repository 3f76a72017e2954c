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

from tracemesh_operator.compiler import CompiledTracing, Problem, compile_tracing, read_mesh, read_telemetry
from tracemesh_operator.compiler.compile import conflict_problem, pick_oldest
from tracemesh_operator.compiler.mesh import NO_ENVIRONMENT, MeshTracing
from tracemesh_operator.compiler.services import service_registry
from tracemesh_operator.compiler.telemetry import TelemetryRules, match_labels
from tracemesh_operator.conditions import HONOURED, TYPES, Condition
from tracemesh_operator.mesh_source import MeshSource, mesh_source
from tracemesh_operator.records import object_key
from tracemesh_operator.workload import pod_labels, proxy_config_for_pod
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
                                world.endpoint_slices)

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
        compiled: dict[tuple[str, frozenset[tuple[str, str]]], CompiledTracing] = {}
        if self._registry is None:
            self._registry = self._compile_registry(world)
            self._selections = _selections(world)
        namespace_services: dict[str, list[Body]] = {}
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
                result = compiled[cache_key] = compile_tracing(mesh_spec, scoped, namespace, labels, self._environ)
            key = object_key(pod)
            conflicts = tuple(p for p in result.problems if p.reason == "ConflictingSelector")
            if conflicts:
                self._selector_conflicts[key] = conflicts
            else:
                self._selector_conflicts.pop(key, None)
            self._hub.set(key, proxy_config_for_pod(pod, result, mesh_spec, self._discovery_address, "0",
                                                    services=self._registry,
                                                    namespace_services=namespace_services[namespace]))

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


def _selections(world: World) -> tuple[str, ...]:
    """Every Service's say in naming pods' inbound ports, comparable between events."""
    return tuple(sorted(repr((key, body.get("metadata", {}).get("creationTimestamp"), (body.get("spec") or {}).get(
        "type"), (body.get("spec") or {}).get("selector"), (body.get("spec") or {}).get("ports")))
        for key, bodies in world.services.items() for body in bodies))


def _matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    return all(labels.get(str(k)) == str(v) for k, v in selector.items())
