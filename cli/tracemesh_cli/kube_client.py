"""The cluster, through the official `kubernetes` client, found as kubectl finds it (--kubeconfig, --context).

The thin I/O shell under `install`, `uninstall`, `dashboard` and `proxy-config`: no kubectl needed.
Objects go in with server-side apply, field manager `tracemesh`, as `kubectl apply --server-side` does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config, dynamic
from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError, ResourceNotFoundError

FIELD_MANAGER = "tracemesh"


class ClusterError(Exception):
    """The cluster could not be reached or refused a request: the message says which and what to do."""


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", "-c", default="",
                        help="kubeconfig file (default $KUBECONFIG or ~/.kube/config, as kubectl)")
    parser.add_argument("--context", default="", help="kubeconfig context to use (default: the current one)")


def kubeconfig_path(kubeconfig: str = "") -> str:
    """kubectl's choice: --kubeconfig, else $KUBECONFIG, else ~/.kube/config."""
    return kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")


def context_namespace(kubeconfig: str = "", context: str = "") -> str:
    """The kubeconfig context's namespace, kubectl's default for -n; `default` when it names none."""
    with contextlib.suppress(config.ConfigException, OSError, TypeError, AttributeError):
        contexts, current = config.list_kube_config_contexts(kubeconfig_path(kubeconfig))
        chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
        namespace = ((chosen or {}).get("context") or {}).get("namespace")
        if namespace:
            return str(namespace)
    return "default"


class Cluster:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self._dynamic: dynamic.DynamicClient | None = None

    @classmethod
    def connect(cls, kubeconfig: str = "", context: str = "") -> Cluster:
        path = kubeconfig_path(kubeconfig)
        try:
            return cls(config.new_client_from_config(config_file=path, context=context or None))
        except (config.ConfigException, OSError) as error:
            if not kubeconfig and config.incluster_config.SERVICE_HOST_ENV_NAME in os.environ:
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)
                return cls(client.ApiClient(configuration))
            raise ClusterError(f"cannot load the kubeconfig {path}{f' (context {context})' if context else ''}: "
                               f"{error}; pass --kubeconfig FILE and --context NAME") from error

    @property
    def dynamic(self) -> dynamic.DynamicClient:
        if self._dynamic is None:
            try:
                self._dynamic = dynamic.DynamicClient(self.api)
            except Exception as error:  # the discovery requests: urllib3 and API errors alike
                raise ClusterError(f"cannot reach the Kubernetes API at {self.api.configuration.host}: {error}; "
                                   "is the cluster up and the kubeconfig's context the right one?") from error
        return self._dynamic

    def resource(self, api_version: str, kind: str) -> Any:
        try:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError as error:
            raise ClusterError(f"the cluster serves no {kind} ({api_version}); "
                               "are tracemesh's CRDs installed (tracemesh install)?") from error

    def serves(self, api_version: str, kind: str) -> bool:
        """Whether discovery lists the kind (a CRD's kind appears shortly after it is Established)."""
        try:
            self.resource(api_version, kind)
        except ClusterError:
            return False
        return True

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            found = self.dynamic.get(self.resource(api_version, kind), name=name, namespace=namespace)
        except NotFoundError:
            return None
        except DynamicApiError as error:
            raise ClusterError(f"GET {kind} {name}: {_summary(error)}") from error
        return cast("dict[str, Any]", found.to_dict())

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str = "") -> list[dict[str, Any]]:
        try:
            # Read as JSON, not as the client's ResourceInstance, which requires the list's `kind`
            # (kmock 0.8 leaves it out of lists).
            response = self.dynamic.get(self.resource(api_version, kind), namespace=namespace,
                                        label_selector=label_selector or None, serialize=False)
        except DynamicApiError as error:
            raise ClusterError(f"LIST {kind} {label_selector}: {_summary(error)}") from error
        items = json.loads(response.data).get("items") or []
        return [cast("dict[str, Any]", item) for item in items if isinstance(item, dict)]

    def apply(self, body: Mapping[str, Any]) -> None:
        """Server-side apply, taking the fields over (force), as `kubectl apply --server-side --force-conflicts`."""
        resource = self.resource(str(body["apiVersion"]), str(body["kind"]))
        metadata = body.get("metadata") or {}
        namespace = metadata.get("namespace") if resource.namespaced else None
        try:
            self.dynamic.server_side_apply(resource, body=dict(body), name=metadata.get("name"), namespace=namespace,
                                           field_manager=FIELD_MANAGER, force_conflicts=True)
        except NotFoundError:
            # An API server creates the object an apply names when it does not exist. kmock 0.8 (the
            # emulator the tests run against) does not: it only patches objects it has, and answers 404.
            # Create it then; on a real server a 404 here means the namespace is missing, and the
            # create fails with that message.
            try:
                self.dynamic.create(resource, body=dict(body), namespace=namespace, field_manager=FIELD_MANAGER)
            except DynamicApiError as error:
                raise ClusterError(f"create {object_name(body)}: {_summary(error)}") from error
        except DynamicApiError as error:
            raise ClusterError(f"apply {object_name(body)}: {_summary(error)}") from error

    def delete(self, body: Mapping[str, Any]) -> bool:
        """False when it was not there."""
        resource = self.resource(str(body["apiVersion"]), str(body["kind"]))
        metadata = body.get("metadata") or {}
        try:
            self.dynamic.delete(resource, name=metadata.get("name"),
                                namespace=metadata.get("namespace") if resource.namespaced else None)
        except NotFoundError:
            return False
        except DynamicApiError as error:
            raise ClusterError(f"delete {object_name(body)}: {_summary(error)}") from error
        return True


def object_name(body: Mapping[str, Any]) -> str:
    metadata = body.get("metadata") or {}
    namespace = metadata.get("namespace")
    return f"{body.get('kind')} {namespace + '/' if namespace else ''}{metadata.get('name')}"


def _summary(error: DynamicApiError) -> str:
    return f"HTTP {error.status} {error.summary()}"
