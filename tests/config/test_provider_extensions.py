"""A provider's tracemesh extensions (README "Coming from Kong"): parsed, dumped back, defaults kept, errors named."""

from __future__ import annotations

from typing import Any

import pytest

from tracemesh_sidecar.config import ConfigError
from tracemesh_sidecar.config.fields import Fields
from tracemesh_sidecar.config.model import ProviderConfig, dump_provider, parse_provider

ZIPKIN = {"service": "zipkin.istio-system.svc.cluster.local", "port": 9411}


def read(**settings: Any) -> ProviderConfig:
    return parse_provider(Fields({"name": "zipkin", "zipkin": {**ZIPKIN, **settings}}, "providers[0]"))


def test_an_istio_provider_keeps_istios_behaviour_and_dumps_as_istios() -> None:
    provider = read()
    assert (provider.header_type, provider.extra_extract, provider.tags_header, provider.baggage_tags) == (
        None, (), None, ())
    assert (provider.send_timeout_s, provider.read_timeout_s, provider.response_header_for_trace_id) == (
        None, None, None)
    assert set(dump_provider(provider)["zipkin"]).isdisjoint(
        {"headerType", "defaultHeaderType", "tagsHeader", "sendTimeout", "readTimeout", "baggageTags"})


def test_every_extension_round_trips() -> None:
    provider = read(headerType="preserve", defaultHeaderType="jaeger", extraExtract=["ot"], tagsHeader="X-Tags",
                    responseHeaderForTraceId="X-Trace-Id", localServiceName="edge", defaultServiceName="app",
                    baggageTags=["tenant"], sendTimeout="250ms", readTimeout="1s")
    assert (provider.tags_header, provider.response_header_for_trace_id) == ("x-tags", "x-trace-id")
    assert (provider.send_timeout_s, provider.read_timeout_s) == (0.25, 1.0)
    assert parse_provider(Fields(dump_provider(provider), "providers[0]")) == provider


@pytest.mark.parametrize(("value", "expected"), [(True, "zipkin-tags"), (False, None), ("Zipkin-Tags", "zipkin-tags")])
def test_tags_header_true_is_kongs_default_name(value: object, expected: str | None) -> None:
    assert read(tagsHeader=value).tags_header == expected


@pytest.mark.parametrize(("settings", "field", "fix"), [
    ({"headerType": "datadog"}, "providers[0].zipkin.headerType", "preserve, ignore"),
    ({"defaultHeaderType": "ignore"}, "providers[0].zipkin.defaultHeaderType", "b3, b3-single"),
    ({"extraExtract": ["b3"]}, "providers[0].zipkin.extraExtract[0]", "jaeger, ot"),
    ({"responseHeaderForTraceId": "x trace"}, "providers[0].zipkin.responseHeaderForTraceId", "X-Trace-Id"),
    ({"baggageTags": [""]}, "providers[0].zipkin.baggageTags[0]", "baggage key"),
    ({"readTimeout": "soon"}, "providers[0].zipkin.readTimeout", ""),
])
def test_bad_extensions_name_the_field_and_the_fix(settings: dict[str, Any], field: str, fix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read(**settings)
    assert caught.value.field == field
    assert fix in caught.value.fix
