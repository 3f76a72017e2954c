"""OTEL_RESOURCE_ATTRIBUTES as the `environment` resource detector reads it (Envoy's
environment_resource_detector.cc, with the OpenTelemetry specification's trimming and percent-decoding)."""

from __future__ import annotations

import pytest

from tracemesh_sidecar.spans.resource import detect_resource, parse_resource_attributes


@pytest.mark.parametrize(("text", "attributes"), [
    ("", {}),
    ("service.version=1.2,k8s.cluster.name=prod", {"service.version": "1.2", "k8s.cluster.name": "prod"}),
    (" team = a b , zone=eu ", {"team": "a b", "zone": "eu"}),
    ("owner=J%C3%BCrgen%2C%20ops,path=%2Fv1", {"owner": "Jürgen, ops", "path": "/v1"}),
    ("empty=", {"empty": ""}),
    # malformed entries are skipped one by one, the rest kept
    ("novalue,a=1", {"a": "1"}),
    ("a=1=2,b=2", {"b": "2"}),
    ("=orphan,b=2", {"b": "2"}),
    ("bad=%zz,short=%4,c=3", {"c": "3"}),
    ("latin1=%E9,c=3", {"c": "3"}),  # not UTF-8 once decoded
    (",,a=1,", {"a": "1"}),
    ("a=1,a=2", {"a": "2"}),
])
def test_parse_resource_attributes(text: str, attributes: dict[str, str]) -> None:
    assert parse_resource_attributes(text) == attributes


def test_only_the_environment_detector_reads_the_environment() -> None:
    environ = {"OTEL_RESOURCE_ATTRIBUTES": "zone=eu"}
    assert detect_resource(("environment",), environ) == (("zone", "eu"),)
    assert detect_resource((), environ) == ()
    assert detect_resource(("environment",), {}) == ()
