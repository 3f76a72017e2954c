"""Each webhook entry's own path decides injection, not the operator's cache of namespace labels.

The failure this guards against: `kubectl label namespace default istio-injection=enabled` and then
`kubectl apply` Bookinfo at once; the API server matches the namespace entry, but the operator's
namespace cache has not seen the label yet (a watch event in flight), and a webhook that asks its
cache starts the pod without a sidecar. Istio avoids it the same way: each of its two entries
(namespace.sidecar-injector, object.sidecar-injector) is its own decision by the API server.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from test_injection_webhook import patched, pod, review

from tracemesh_operator.injection import certs, webhook
from tracemesh_operator.injection.mutation import InjectionSettings

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "webhook.yaml"


def stale_namespace_cache(name: str) -> dict[str, str]:
    """The operator's cache before the watch delivered the new `istio-injection=enabled` label."""
    return {"kubernetes.io/metadata.name": name}


@pytest.fixture
async def webhook_url(tmp_path: Path) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    certificate = certs.load_or_create(None, tmp_path)
    app = webhook.create_app(stale_namespace_cache, InjectionSettings())
    runner = await webhook.start_server(app, certs.server_ssl_context(certificate), host="127.0.0.1", port=0)
    trust = ssl.create_default_context(cadata=certificate.ca_pem.decode())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as session:
        yield session, f"https://localhost:{runner.addresses[0][1]}"
    await runner.cleanup()


async def answer(client: tuple[aiohttp.ClientSession, str], path: str, body: dict[str, Any]) -> dict[str, Any]:
    session, base = client
    async with session.post(base + path, json=body) as response:
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result


def manifest_paths() -> dict[str, str]:
    (configuration,) = [doc for doc in yaml.safe_load_all(MANIFEST.read_text())
                        if doc and doc["kind"] == "MutatingWebhookConfiguration"]
    return {entry["name"]: entry["clientConfig"]["service"]["path"] for entry in configuration["webhooks"]}


async def test_the_namespace_entry_injects_although_the_cache_has_not_seen_the_label(
        webhook_url: tuple[aiohttp.ClientSession, str]) -> None:
    path = manifest_paths()["namespace.sidecar-injector.tracemesh.io"]
    request = review("default", pod("productpage"))
    injected = patched(request, await answer(webhook_url, path, request))
    assert [c["name"] for c in injected["spec"]["initContainers"]] == ["istio-init", "istio-proxy"]


async def test_the_namespace_entry_still_honours_the_pods_opt_out(
        webhook_url: tuple[aiohttp.ClientSession, str]) -> None:
    path = manifest_paths()["namespace.sidecar-injector.tracemesh.io"]
    request = review("default", pod("details", {"sidecar.istio.io/inject": "false"}))
    assert (await answer(webhook_url, path, request))["response"] == {
        "uid": request["request"]["uid"], "allowed": True}


async def test_the_pod_entry_injects_the_pod_that_asked(webhook_url: tuple[aiohttp.ClientSession, str]) -> None:
    path = manifest_paths()["object.sidecar-injector.tracemesh.io"]
    request = review("plain", pod("ratings", {"sidecar.istio.io/inject": "true"}))
    injected = patched(request, await answer(webhook_url, path, request))
    assert "istio-proxy" in [c["name"] for c in injected["spec"]["initContainers"]]


async def test_the_cache_path_is_what_went_wrong(webhook_url: tuple[aiohttp.ClientSession, str]) -> None:
    """The single `/inject` path with the same stale cache starts the pod bare: the defect itself."""
    request = review("default", pod("productpage"))
    assert "patch" not in (await answer(webhook_url, "/inject", request))["response"]


async def test_an_unknown_entry_path_is_refused_naming_the_paths(
        webhook_url: tuple[aiohttp.ClientSession, str]) -> None:
    session, base = webhook_url
    async with session.post(f"{base}/inject/namespace", json=review("default", pod("reviews"))) as response:
        assert response.status == 404
        assert "/inject/namespace-enabled, /inject/pod-enabled" in await response.text()
