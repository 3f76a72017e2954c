"""The webhook's TLS: a mounted certificate, or a self-signed CA and serving certificate made at start-up.

The API server only calls webhooks over TLS it can verify, against the `caBundle` of the
MutatingWebhookConfiguration. A certificate mounted at `--cert-dir` (tls.crt, tls.key and
ca.crt, e.g. from cert-manager) is used as is; otherwise the operator makes a fresh CA and
serving certificate at every start and puts the CA into the caBundle (`sync_ca_bundle`).
Run one operator replica in that mode: two would each install their own CA, in turn.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tracemesh_operator.injection.patch import add, pointer

WEBHOOK_SERVICE = "tracemesh-webhook"
WEBHOOK_NAMESPACE = "istio-system"
WEBHOOK_CONFIGURATION = "tracemesh-sidecar-injector"
CA_VALIDITY = datetime.timedelta(days=3650)
SERVING_VALIDITY = datetime.timedelta(days=365)
CLOCK_SKEW = datetime.timedelta(minutes=5)  # nodes whose clocks run a little behind still accept it


@dataclass(frozen=True, slots=True)
class ServingCertificate:
    cert_file: Path
    key_file: Path
    ca_pem: bytes  # what the API server must trust: the webhook configuration's caBundle


def webhook_hosts(service: str = WEBHOOK_SERVICE, namespace: str = WEBHOOK_NAMESPACE) -> list[str]:
    """Every name the API server may use for the service, plus loopback for local runs and tests."""
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.cluster.local", "localhost", "127.0.0.1"]


def load_or_create(cert_dir: Path | None, work_dir: Path, hosts: Sequence[str] | None = None) -> ServingCertificate:
    """The mounted certificate in `cert_dir` when there is one, else a new one written to `work_dir`."""
    if cert_dir is not None and (cert_dir / "tls.crt").is_file() and (cert_dir / "tls.key").is_file():
        ca_file = cert_dir / "ca.crt"
        # Without a ca.crt the serving certificate must be self-signed: it is its own trust anchor.
        ca_pem = (ca_file if ca_file.is_file() else cert_dir / "tls.crt").read_bytes()
        return ServingCertificate(cert_dir / "tls.crt", cert_dir / "tls.key", ca_pem)
    ca_pem, cert_pem, key_pem = generate(hosts or webhook_hosts())
    work_dir.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = work_dir / "tls.crt", work_dir / "tls.key"
    key_file.touch(mode=0o600)
    key_file.write_bytes(key_pem)
    cert_file.write_bytes(cert_pem + ca_pem)  # the chain, leaf first
    return ServingCertificate(cert_file, key_file, ca_pem)


def generate(hosts: Sequence[str], now: datetime.datetime | None = None) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, serving certificate, serving key), PEM; the serving certificate covers `hosts`."""
    now = now or datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tracemesh webhook CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + SERVING_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    encoding = serialization.Encoding.PEM
    return ca_cert.public_bytes(encoding), cert.public_bytes(encoding), key_pem


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                         crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def server_ssl_context(certificate: ServingCertificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate.cert_file, certificate.key_file)
    return context


def ca_bundle_patch(webhook_configuration: Mapping[str, Any], ca_pem: bytes) -> list[dict[str, Any]]:
    """JSON patch putting `ca_pem` into every webhook's caBundle; empty when all are in step already.

    It starts with a `test` of the resourceVersion, so a configuration changed since it was
    read (webhooks reordered by a re-apply) makes the API server refuse the patch instead of
    writing a caBundle into the wrong entry; the next sync reads it afresh.
    """
    bundle = base64.b64encode(ca_pem).decode()
    webhooks = webhook_configuration.get("webhooks")
    patch = []
    for index, webhook in enumerate(webhooks if isinstance(webhooks, list) else []):
        client_config = webhook.get("clientConfig") if isinstance(webhook, Mapping) else None
        if not isinstance(client_config, Mapping):
            continue
        if client_config.get("caBundle") != bundle:
            patch.append(add(pointer("webhooks", index, "clientConfig", "caBundle"), bundle))
    if not patch:
        return []
    version = webhook_configuration.get("metadata", {}).get("resourceVersion")
    guard = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}] if version else []
    return guard + patch


async def sync_ca_bundle(session: aiohttp.ClientSession, api_url: str, ca_pem: bytes,
                         name: str = WEBHOOK_CONFIGURATION) -> bool:
    """Brings the MutatingWebhookConfiguration's caBundle in step; True when it had to patch it.

    Takes an aiohttp session the caller has set up with the API server's address, token and
    CA (in-cluster: the service account files) rather than a kopf object: kopf offers no
    public client for arbitrary resources, and a plain session keeps this testable against
    any HTTP server. Call it at start-up and from a handler on the configuration (a
    `kubectl apply` of manifests/webhook.yaml empties the caBundle again).
    """
    url = f"{api_url.rstrip('/')}/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}"
    async with session.get(url) as response:
        if response.status != 200:
            raise RuntimeError(f"reading {url} failed: {response.status} {await response.text()}")
        configuration = await response.json()
    patch = ca_bundle_patch(configuration, ca_pem)
    if not patch:
        return False
    headers = {"Content-Type": "application/json-patch+json"}
    async with session.patch(url, data=json.dumps(patch), headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"patching the caBundle of {url} failed: {response.status} {await response.text()}")
    return True
