"""Webhook certificates: generated when none is mounted, mounted ones used as is, caBundle kept in step."""

from __future__ import annotations

import base64
import datetime
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import pytest
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tracemesh_operator.injection import certs

REPO = Path(__file__).resolve().parents[2]


def test_generated_serving_certificate_is_signed_by_the_ca_for_every_service_name() -> None:
    ca_pem, cert_pem, _ = certs.generate(certs.webhook_hosts())
    ca = x509.load_pem_x509_certificate(ca_pem)
    leaf = x509.load_pem_x509_certificate(cert_pem)
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) >= {
        "tracemesh-webhook.istio-system.svc", "tracemesh-webhook.istio-system.svc.cluster.local", "localhost"}
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    now = datetime.datetime.now(datetime.UTC)
    assert leaf.not_valid_before_utc < now < leaf.not_valid_after_utc


def test_generated_files_are_a_loadable_chain_with_a_private_key(tmp_path: Path) -> None:
    certificate = certs.load_or_create(None, tmp_path / "work")
    assert certificate.key_file.stat().st_mode & 0o777 == 0o600
    certs.server_ssl_context(certificate)  # loads chain and key
    assert certificate.ca_pem in certificate.cert_file.read_bytes()


def test_mounted_certificate_is_used_as_is(tmp_path: Path) -> None:
    ca_pem, cert_pem, key_pem = certs.generate(["tracemesh-webhook.istio-system.svc"])
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    (mounted / "tls.crt").write_bytes(cert_pem)
    (mounted / "tls.key").write_bytes(key_pem)
    (mounted / "ca.crt").write_bytes(ca_pem)
    certificate = certs.load_or_create(mounted, tmp_path / "work")
    assert certificate.cert_file == mounted / "tls.crt"
    assert certificate.ca_pem == ca_pem
    assert not (tmp_path / "work").exists()
    (mounted / "ca.crt").unlink()
    assert certs.load_or_create(mounted, tmp_path / "work").ca_pem == cert_pem  # self-signed: its own anchor


def webhook_configuration() -> dict[str, Any]:
    documents = list(yaml.safe_load_all((REPO / "manifests" / "webhook.yaml").read_text()))
    configuration: dict[str, Any] = next(d for d in documents if d["kind"] == "MutatingWebhookConfiguration")
    configuration["metadata"]["resourceVersion"] = "41"
    return configuration


def test_ca_bundle_patch_fills_every_webhook_then_is_empty() -> None:
    configuration = webhook_configuration()
    assert configuration["metadata"]["name"] == certs.WEBHOOK_CONFIGURATION
    patch = certs.ca_bundle_patch(configuration, b"PEM")
    assert patch[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "41"}
    updated = jsonpatch.apply_patch(configuration, patch)
    assert [w["clientConfig"]["caBundle"] for w in updated["webhooks"]] == [base64.b64encode(b"PEM").decode()] * 2
    assert certs.ca_bundle_patch(updated, b"PEM") == []
    assert len(certs.ca_bundle_patch(updated, b"NEW")) == 3


@pytest.fixture
async def api_server() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The API server's two endpoints sync_ca_bundle uses, applying JSON patches for real."""
    state: dict[str, Any] = {"object": webhook_configuration(), "patches": []}
    path = f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{certs.WEBHOOK_CONFIGURATION}"

    async def get(request: web.Request) -> web.Response:
        return web.json_response(state["object"])

    async def patch(request: web.Request) -> web.Response:
        assert request.content_type == "application/json-patch+json"
        operations = json.loads(await request.read())
        state["patches"].append(operations)
        try:
            state["object"] = jsonpatch.apply_patch(state["object"], operations)
        except jsonpatch.JsonPatchTestFailed:
            return web.json_response({"reason": "Invalid"}, status=422)
        state["object"]["metadata"]["resourceVersion"] = str(int(state["object"]["metadata"]["resourceVersion"]) + 1)
        return web.json_response(state["object"])

    app = web.Application()
    app.router.add_get(path, get)
    app.router.add_patch(path, patch)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", state
    await runner.cleanup()


async def test_sync_ca_bundle_patches_once_then_leaves_it(api_server: tuple[str, dict[str, Any]]) -> None:
    url, state = api_server
    async with aiohttp.ClientSession() as session:
        assert await certs.sync_ca_bundle(session, url, b"CA-1") is True
        assert await certs.sync_ca_bundle(session, url, b"CA-1") is False
        assert await certs.sync_ca_bundle(session, url, b"CA-2") is True
    assert len(state["patches"]) == 2
    bundles = {w["clientConfig"]["caBundle"] for w in state["object"]["webhooks"]}
    assert bundles == {base64.b64encode(b"CA-2").decode()}


async def test_sync_ca_bundle_reports_an_api_error(api_server: tuple[str, dict[str, Any]]) -> None:
    url, _ = api_server
    async with aiohttp.ClientSession() as session:
        with pytest.raises(RuntimeError, match="404"):
            await certs.sync_ca_bundle(session, url, b"CA", name="absent")


def test_server_context_refuses_old_tls(tmp_path: Path) -> None:
    context = certs.server_ssl_context(certs.load_or_create(None, tmp_path))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
