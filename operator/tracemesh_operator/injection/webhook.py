"""The admission webhook: HTTPS on 15017, an AdmissionReview v1 from the API server on one path per entry.

Each entry of manifests/webhook.yaml has its own path, as Istio's namespace.sidecar-injector and
object.sidecar-injector entries do: the API server calls `/inject/namespace-enabled` only for a pod
whose namespace it matched with `istio-injection=enabled`, and `/inject/pod-enabled` only for a pod
labelled `sidecar.istio.io/inject: "true"` in a namespace without that label. The path therefore
says what the namespace is labelled, as the API server saw it when the pod was created, and the
decision never waits on (or is misled by) the operator's cache of namespace labels: a pod created
in a namespace labelled a moment ago is injected. Plain `/inject` (webhook configurations applied
before these paths existed) still reads the labels from the operator's cache.

`review_response` is the pure core (review document in, review document out); the aiohttp
handler around it only reads the body and writes the answer.

What a review that cannot be served gets, in line with `failurePolicy: Fail`
(manifests/webhook.yaml), under which a pod the mesh should have is never started without
its sidecar:
- no readable `request.uid` (not JSON, not an AdmissionReview): HTTP 400 with the reason —
  we cannot answer a review we cannot name, and the API server applies failurePolicy;
- a readable uid but a request we cannot read (no pod object, wrong apiVersion), or a pod
  with a malformed interception annotation: `allowed: false` with the reason, so the user
  sees exactly which field to fix in the `kubectl apply` error;
- an object that is not a Pod, or an operation other than CREATE (the webhook rules were
  widened by hand): `allowed: true` with a warning — refusing unrelated objects would turn a
  configuration slip into an outage.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from tracemesh_operator.injection.mutation import NAMESPACE_LABEL, InjectionSettings, Skip, inject
from tracemesh_sidecar.config import ConfigError

log = logging.getLogger(__name__)

DEFAULT_PORT = 15017
API_VERSION = "admission.k8s.io/v1"
# A Pod is at most ~1.5 MB (etcd's object limit); the review wraps it (and oldObject) once more.
MAX_REVIEW_BYTES = 8 * 1024 * 1024

NamespaceLabels = Callable[[str], Mapping[str, str]]

# `/inject/<entry>` -> the namespace labels the API server's selectors of that entry imply.
ENTRY_NAMESPACE_LABELS: Mapping[str, Mapping[str, str]] = {
    "namespace-enabled": {NAMESPACE_LABEL: "enabled"},  # namespaceSelector istio-injection=enabled
    "pod-enabled": {},  # namespaceSelector: istio-injection DoesNotExist
}


class MalformedReview(ValueError):
    """The body is not an AdmissionReview this webhook can answer at all."""


def review_response(review: object, namespace_labels: NamespaceLabels,
                    settings: InjectionSettings) -> dict[str, Any]:
    """The AdmissionReview answer; raises MalformedReview when there is no uid to answer to."""
    problem = ("expected an AdmissionReview (admission.k8s.io/v1) with request.uid; "
               "check admissionReviewVersions: [v1] in the webhook configuration")
    if not isinstance(review, Mapping):
        raise MalformedReview(problem)
    request = review.get("request")
    uid = request.get("uid") if isinstance(request, Mapping) else None
    if not isinstance(request, Mapping) or not isinstance(uid, str) or not uid:
        raise MalformedReview(problem)
    if review.get("apiVersion") != API_VERSION or review.get("kind") != "AdmissionReview":
        return _answer(uid, allowed=False, message=(
            f"apiVersion/kind is {review.get('apiVersion')}/{review.get('kind')}; tracemesh answers "
            f"{API_VERSION} AdmissionReview only: set admissionReviewVersions: [v1]"))
    kind = request.get("kind")
    if not isinstance(kind, Mapping) or kind.get("kind") != "Pod" or request.get("operation") != "CREATE":
        what = f"{kind.get('kind') if isinstance(kind, Mapping) else kind} {request.get('operation')}"
        return _answer(uid, allowed=True, warning=f"tracemesh injects only on Pod CREATE, not {what}; "
                       "check the rules of the tracemesh webhook configuration")
    pod = request.get("object")
    namespace = request.get("namespace")
    if not isinstance(pod, Mapping) or not isinstance(namespace, str) or not namespace:
        return _answer(uid, allowed=False,
                       message="request.object (the Pod) or request.namespace is missing from the review")
    pod_name = _pod_display_name(pod, namespace)
    try:
        outcome = inject(pod, namespace_labels(namespace), settings)
    except ConfigError as error:
        log.warning("refusing pod %s: %s", pod_name, error)
        return _answer(uid, allowed=False, message=f"tracemesh sidecar injection: {error}")
    if isinstance(outcome, Skip):
        log.debug("not injecting %s: %s", pod_name, outcome.reason)
        return _answer(uid, allowed=True)
    log.info("injecting %s", pod_name)
    response = _answer(uid, allowed=True)
    response["response"]["patchType"] = "JSONPatch"
    response["response"]["patch"] = base64.b64encode(json.dumps(outcome.patch).encode()).decode()
    return response


def _answer(uid: str, *, allowed: bool, message: str | None = None, warning: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if message is not None:
        response["status"] = {"code": 400, "message": message}
    if warning is not None:
        response["warnings"] = [warning]
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def _pod_display_name(pod: Mapping[str, Any], namespace: str) -> str:
    metadata = pod.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    return f"{namespace}/{metadata.get('name') or str(metadata.get('generateName') or '') + '*'}"


SETTINGS_KEY = web.AppKey("settings", InjectionSettings)
LABELS_KEY: web.AppKey[NamespaceLabels] = web.AppKey("namespace_labels")


def create_app(namespace_labels: NamespaceLabels, settings: InjectionSettings) -> web.Application:
    app = web.Application(client_max_size=MAX_REVIEW_BYTES)
    app[SETTINGS_KEY] = settings
    app[LABELS_KEY] = namespace_labels
    app.router.add_post("/inject", _inject)
    app.router.add_post("/inject/{entry}", _inject)
    app.router.add_get("/healthz", _healthz)
    return app


async def start_server(app: web.Application, ssl_context: ssl.SSLContext, host: str = "0.0.0.0",
                       port: int = DEFAULT_PORT) -> web.AppRunner:
    """Serves until `await runner.cleanup()`; `runner.addresses` has the bound port."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    return runner


async def _inject(request: web.Request) -> web.Response:
    entry = request.match_info.get("entry")
    namespace_labels = request.app[LABELS_KEY]
    if entry is not None:
        if entry not in ENTRY_NAMESPACE_LABELS:
            return web.Response(status=404, text=f"no webhook path /inject/{entry}; the paths are "
                                f"{', '.join('/inject/' + name for name in ENTRY_NAMESPACE_LABELS)}\n")
        labels = ENTRY_NAMESPACE_LABELS[entry]
        namespace_labels = lambda _namespace: labels  # noqa: E731 (the entry's labels, whatever the namespace)
    body = await request.read()
    try:
        review = json.loads(body)
        answer = review_response(review, namespace_labels, request.app[SETTINGS_KEY])
    except (ValueError, MalformedReview) as error:  # JSONDecodeError is a ValueError
        reason = error if isinstance(error, MalformedReview) else f"the body is not JSON ({error})"
        log.warning("malformed admission review from %s: %s", request.remote, reason)
        return web.Response(status=400, text=f"malformed AdmissionReview: {reason}\n")
    return web.json_response(answer)


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")
