"""The networking CRDs are Istio's own and the Gateway API's standard channel: they accept Istio's own examples
(istio/api doc comments, istio/istio samples and test data, verbatim) and reject what their schemas reject."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "manifests" / "crds"
GATEWAY_API = REPO / "manifests" / "gateway-api" / "standard-install.yaml"
FIXTURES = REPO / "tests" / "fixtures" / "istio"
SAMPLES = REPO / "samples" / "bookinfo"
ISTIO_API = Path("/work/.mirror/istio+api/repo")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the openAPIV3Schema of every CRD installed."""
    found = {}
    crds = [doc for path in sorted(CRDS.glob("istio-*.yaml")) for doc in documents(path)] + [
        doc for doc in documents(GATEWAY_API) if doc["kind"] == "CustomResourceDefinition"]
    for crd in crds:
        for version in crd["spec"]["versions"]:
            if version["served"]:
                found[(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])] = (
                    version["schema"]["openAPIV3Schema"])
    return found


SCHEMAS = _schemas()


def errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMAS[doc["apiVersion"], doc["kind"]])
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_istio_networking_is_served_as_v1_v1beta1_and_v1alpha3_with_one_schema() -> None:
    for kind in ("Gateway", "VirtualService", "DestinationRule"):
        schemas = [SCHEMAS[f"networking.istio.io/{version}", kind] for version in ("v1", "v1beta1", "v1alpha3")]
        assert schemas[0]["properties"]["spec"] == schemas[1]["properties"]["spec"] == schemas[2]["properties"]["spec"]


def test_the_crds_are_istios_own_document_for_document() -> None:
    if not (ISTIO_API / "HEAD").exists() and not ISTIO_API.exists():
        pytest.skip("no istio/api mirror on this machine")
    upstream = subprocess.run(["git", "-C", str(ISTIO_API), "show",
                               "b8f8791d9653b2edc77a071d48887e582cfe84bf:kubernetes/customresourcedefinitions.gen.yaml"],
                              capture_output=True, text=True, check=False)
    if upstream.returncode != 0:
        pytest.skip("the istio/api mirror lacks the pinned commit")
    theirs = {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(upstream.stdout) if doc}
    for path in sorted(CRDS.glob("istio-*.yaml")):
        [ours] = documents(path)
        assert ours == theirs[ours["metadata"]["name"]], path.name


def test_the_gateway_api_is_the_pinned_standard_channel() -> None:
    header = GATEWAY_API.read_text().splitlines()[:3]
    assert "v1.6.0" in header[0] and "standard channel" in header[0]
    crds = {doc["metadata"]["name"]: doc for doc in documents(GATEWAY_API) if doc["kind"] == "CustomResourceDefinition"}
    assert {"gatewayclasses.gateway.networking.k8s.io", "gateways.gateway.networking.k8s.io",
            "httproutes.gateway.networking.k8s.io", "referencegrants.gateway.networking.k8s.io"} <= crds.keys()
    for crd in crds.values():
        annotations = crd["metadata"]["annotations"]
        assert annotations["gateway.networking.k8s.io/bundle-version"] == "v1.6.0"
        assert annotations["gateway.networking.k8s.io/channel"] == "standard"


ISTIO_EXAMPLES = [
    *(FIXTURES / "api" / "networking").glob("*-examples.yaml"),
    FIXTURES / "tests" / "integration" / "telemetry" / "tracing" / "otelcollector" / "testdata" / "echo-gateway.yaml",
    *(SAMPLES / "networking").glob("*.yaml"),
    *(SAMPLES / "gateway-api").glob("*.yaml"),
]


@pytest.mark.parametrize("path", sorted(set(ISTIO_EXAMPLES)), ids=lambda path: path.name)
def test_istios_own_documents_are_accepted(path: Path) -> None:
    # Kinds tracemesh serves; an example's ServiceEntry (not implemented) is not installed here.
    docs = [doc for doc in documents(path) if (doc["apiVersion"], doc["kind"]) in SCHEMAS]
    assert docs
    for doc in docs:
        assert errors(doc) == [], (path.name, doc["metadata"]["name"])


def _virtual_service() -> dict[str, Any]:
    return documents(SAMPLES / "networking" / "bookinfo-gateway.yaml")[1]


def _with(doc: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(doc)
    target: Any = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


GATEWAY = documents(SAMPLES / "networking" / "bookinfo-gateway.yaml")[0]
RULE = documents(SAMPLES / "networking" / "destination-rule-all.yaml")[1]
HTTP_ROUTE = documents(SAMPLES / "gateway-api" / "bookinfo-gateway.yaml")[1]
REJECTED = [
    ("server without a port", _with(GATEWAY, ["spec", "servers", 0], {"hosts": ["*"]}), "port"),
    ("server port as text", _with(GATEWAY, ["spec", "servers", 0, "port", "number"], "eighty"), "integer"),
    ("server without hosts", _with(GATEWAY, ["spec", "servers", 0], {"port": GATEWAY["spec"]["servers"][0]["port"]}),
     "hosts"),
    ("destination without host", _with(_virtual_service(), ["spec", "http", 0, "route", 0, "destination"],
                                       {"port": {"number": 9080}}), "host"),
    ("weight as text", _with(_virtual_service(), ["spec", "http", 0, "route", 0, "weight"], "all"), "integer"),
    ("timeout as a number", _with(_virtual_service(), ["spec", "http", 0, "timeout"], 10), "string"),
    ("subset without a name", _with(RULE, ["spec", "subsets", 0], {"labels": {"version": "v1"}}), "name"),
    ("HTTPRoute path type unknown", _with(HTTP_ROUTE, ["spec", "rules", 0, "matches", 0, "path", "type"], "Glob"),
     "Glob"),
    ("HTTPRoute backend weight negative", _with(HTTP_ROUTE, ["spec", "rules", 0, "backendRefs", 0, "weight"], -1),
     "-1"),
]


@pytest.mark.parametrize(("doc", "words"), [case[1:] for case in REJECTED], ids=[case[0] for case in REJECTED])
def test_what_the_schemas_reject_is_rejected(doc: dict[str, Any], words: str) -> None:
    found = errors(doc)
    assert found and any(words in error for error in found), found
