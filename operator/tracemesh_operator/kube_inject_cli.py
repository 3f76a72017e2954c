"""`tracemesh kube-inject -f deployment.yaml [-o out.yaml]`: the manifest with sidecars injected, offline.

Like `istioctl kube-inject`: every Pod and every pod template (Deployment, StatefulSet,
DaemonSet, ReplicaSet, Job, CronJob) is injected as if its namespace were labelled
`istio-injection=enabled`, by the same mutation and patch the webhook sends, so the output
is what the cluster would run. Other documents pass through unchanged; pods that opt out or
are injected already are left as they are (and named on stderr).
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tracemesh_operator.arguments import host_port
from tracemesh_operator.injection.mutation import (
    DEFAULT_DISCOVERY_ADDRESS,
    DEFAULT_IMAGE,
    NAMESPACE_LABEL,
    InjectionSettings,
    Skip,
    inject,
)
from tracemesh_operator.injection.patch import apply_patch
from tracemesh_sidecar.config import ConfigError

# Where each workload kind keeps the pod it creates.
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    **{kind: ("spec", "template") for kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")},
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
_AS_IF_LABELLED = {NAMESPACE_LABEL: "enabled"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", required=True, help="manifest to inject ('-' for stdin)")
    parser.add_argument("-o", "--output", help="write the result here instead of stdout")
    parser.add_argument("--proxy-image", default=DEFAULT_IMAGE, help=f"default {DEFAULT_IMAGE}")
    parser.add_argument("--init-image", default=None, help="default: the proxy image")
    parser.add_argument("--discovery-address", type=host_port, default=DEFAULT_DISCOVERY_ADDRESS,
                        help=f"where sidecars subscribe for config (default {DEFAULT_DISCOVERY_ADDRESS})")
    parser.add_argument("--native-sidecar", choices=("true", "false"), default="true",
                        help="proxy as a native sidecar (Kubernetes >= 1.29; default true)")
    parser.add_argument("--meshConfigFile", dest="mesh_config_file", metavar="FILE",
                        help="istioctl's flag: a MeshConfig resource, or Istio's mesh config (the `mesh` key of "
                             "its ConfigMap), whose defaultConfig each pod's proxy.istio.io/config overlays")


def run(args: argparse.Namespace) -> int:
    try:
        default_config = _mesh_default_config(args.mesh_config_file) if args.mesh_config_file else {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ConfigError) as error:
        print(f"tracemesh kube-inject: --meshConfigFile {args.mesh_config_file}: {error}", file=sys.stderr)
        return 1
    settings = InjectionSettings(proxy_image=args.proxy_image, init_image=args.init_image or args.proxy_image,
                                 discovery_address=args.discovery_address,
                                 native_sidecar=args.native_sidecar == "true", mesh_default_config=default_config)
    try:
        text = sys.stdin.read() if args.filename == "-" else Path(args.filename).read_text()
        documents = list(yaml.safe_load_all(text))
    except (OSError, UnicodeDecodeError) as error:
        print(f"tracemesh kube-inject: cannot read {args.filename}: {error}", file=sys.stderr)
        return 1
    except yaml.YAMLError as error:
        print(f"tracemesh kube-inject: {args.filename} is not valid YAML: {error}", file=sys.stderr)
        return 1
    try:
        injected = [inject_document(document, settings) for document in documents if document is not None]
    except ConfigError as error:
        print(f"tracemesh kube-inject: {error}", file=sys.stderr)
        return 1
    output = yaml.safe_dump_all(injected, sort_keys=False)
    if args.output:
        Path(args.output).write_text(output)
    else:
        sys.stdout.write(output)
    return 0


def _mesh_default_config(path: str) -> Mapping[str, Any]:
    document = yaml.safe_load(Path(path).read_text())
    if isinstance(document, Mapping) and document.get("kind") == "MeshConfig":
        document = document.get("spec")
    default_config = document.get("defaultConfig", {}) if isinstance(document, Mapping) else None
    if not isinstance(default_config, Mapping):
        raise ConfigError("defaultConfig", "is not a mapping", "give a MeshConfig whose defaultConfig is a ProxyConfig")
    return default_config


def inject_document(document: Any, settings: InjectionSettings) -> Any:
    """The document with its pod (template) injected; raises ConfigError naming the workload."""
    if not isinstance(document, Mapping):
        return document
    kind = document.get("kind")
    if kind == "List" and isinstance(document.get("items"), list):
        return {**document, "items": [inject_document(item, settings) for item in document["items"]]}
    if kind == "Pod":
        return _inject_pod(document, document, settings)
    path = TEMPLATE_PATHS.get(str(kind))
    if path is None:
        return document
    result = copy.deepcopy(dict(document))
    holder: Any = result
    for key in path[:-1]:
        holder = holder.get(key) if isinstance(holder, dict) else None
    if isinstance(holder, dict) and isinstance(holder.get(path[-1]), dict):
        holder[path[-1]] = _inject_pod(document, holder[path[-1]], settings)
    return result


def _inject_pod(workload: Mapping[str, Any], pod: Mapping[str, Any], settings: InjectionSettings) -> Any:
    if not isinstance(pod.get("metadata"), Mapping):
        pod = {**pod, "metadata": {}}  # a template may leave it out; the patch adds to it
    try:
        outcome = inject(_pod_view(workload, pod), _AS_IF_LABELLED, settings)
    except ConfigError as error:
        raise ConfigError(f"{_name(workload)}: {error.field}", error.problem, error.fix) from None
    if isinstance(outcome, Skip):
        print(f"tracemesh kube-inject: {_name(workload)} left as it is: {outcome.reason}", file=sys.stderr)
        return pod
    return apply_patch(pod, outcome.patch)


def _pod_view(workload: Mapping[str, Any], pod: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod as the webhook would see it: owned by the workload, so its canonical name falls back to it."""
    if pod is workload:
        return pod
    metadata = dict(pod.get("metadata") or {})
    name = _metadata_name(workload)
    if name:
        metadata["ownerReferences"] = [{"kind": workload.get("kind"), "name": name, "controller": True}]
    return {**pod, "metadata": metadata}


def _metadata_name(document: Mapping[str, Any]) -> str | None:
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return str(name) if name else None


def _name(document: Mapping[str, Any]) -> str:
    return f"{document.get('kind')}/{_metadata_name(document) or '?'}"
