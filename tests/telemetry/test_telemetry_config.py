"""The `metrics` and `accessLogs` sections of the proxy config document (config/observability.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tracemesh_sidecar.config import ConfigError, dump_proxy_config, parse_proxy_config
from tracemesh_sidecar.config.observability import (
    AccessLogConfig,
    AccessLogSink,
    MetricOverride,
    MetricsConfig,
    MetricsPolicy,
)

NODE = {"podName": "reviews-v1-x", "namespace": "default", "canonicalService": "reviews"}


def parse(**sections: Any) -> Any:
    return parse_proxy_config({"node": NODE, **sections})


def test_defaults_are_istios_metrics_on_and_no_access_logs() -> None:
    config = parse()
    assert config.metrics == MetricsConfig(MetricsPolicy(True, ()), MetricsPolicy(True, ()))
    assert config.access_logs == AccessLogConfig((), ())


def test_a_full_document_reads_and_dumps_back_the_same() -> None:
    config = parse(
        metrics={"client": {"overrides": [
            {"metric": "REQUEST_COUNT", "disabled": False, "tagRemove": ["request_protocol"],
             "tagSet": {"destination_port": "string(destination.port)"}},
            {"metric": "ALL_METRICS", "disabled": True}]},
            "server": {"enabled": False}},
        accessLogs={"client": [{"path": "/dev/stdout", "encoding": "JSON",
                                "labels": {"code": "%RESPONSE_CODE%", "path": "%REQ(:PATH)%"}}],
                    "server": [{"path": "/var/log/access.log", "format": "%RESPONSE_CODE%\n",
                                "filter": "response.code >= 400"}]},
    )
    assert config.metrics.client.overrides == (
        MetricOverride("REQUEST_COUNT", False, ("request_protocol",),
                       (("destination_port", "string(destination.port)"),)),
        MetricOverride("ALL_METRICS", True),
    )
    assert not config.metrics.server.enabled
    assert config.access_logs.client == (
        AccessLogSink("/dev/stdout", "JSON", None, (("code", "%RESPONSE_CODE%"), ("path", "%REQ(:PATH)%"))),)
    assert config.access_logs.server == (AccessLogSink("/var/log/access.log", "TEXT", "%RESPONSE_CODE%\n", (),
                                                       "response.code >= 400"),)
    assert parse_proxy_config(dump_proxy_config(config)) == config


@pytest.mark.parametrize(("sections", "field", "words"), [
    ({"metrics": {"client": {"overrides": [{"metric": "GRPC_REQUEST_MESSAGES"}]}}},
     "metrics.client.overrides[0].metric", "use one of ALL_METRICS"),
    ({"metrics": {"server": {"overrides": [{"tagSet": {"x": "request.nope"}}]}}},
     "metrics.server.overrides[0].tagSet.x", "attribute 'request.nope' is not supported"),
    ({"metrics": {"client": {"overrides": [{"tagRemove": [3]}]}}},
     "metrics.client.overrides[0].tagRemove[0]", "must be a tag name"),
    ({"metrics": {"client": {"overrides": [{"disabled": "yes"}]}}},
     "metrics.client.overrides[0].disabled", "must be true or false"),
    ({"accessLogs": {"server": [{"filter": "response.code >>= 400"}]}},
     "accessLogs.server[0].filter", "is not supported"),
    ({"accessLogs": {"server": [{"format": "%DYNAMIC_METADATA(x)%"}]}},
     "accessLogs.server[0].format", "is not supported"),
    ({"accessLogs": {"server": [{"encoding": "JSON", "labels": {"a": "%NOPE%"}}]}},
     "accessLogs.server[0].labels.a", "%NOPE% is not supported"),
    ({"accessLogs": {"client": [{"encoding": "JSON", "format": "%DURATION%"}]}},
     "accessLogs.client[0].format", "is set for a JSON access log"),
    ({"accessLogs": {"client": [{"labels": {"a": "%DURATION%"}}]}},
     "accessLogs.client[0].labels", "is set for a TEXT access log"),
    ({"accessLogs": {"client": [{"encoding": "XML"}]}}, "accessLogs.client[0].encoding", "use one of TEXT, JSON"),
    ({"accessLogs": {"client": [{"path": "/dev/stdout", "sampling": 1}]}},
     "accessLogs.client[0].sampling", "is not a known field"),
])
def test_bad_sections_name_the_field_and_the_fix(sections: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(**sections)
    assert raised.value.field == field
    assert words in str(raised.value)
