"""Envoy's command operators and Istio's default access-log formats (telemetry/logformat.py)."""

from __future__ import annotations

import json

import pytest
from telemetry_records import http_record

from tracemesh_sidecar.telemetry.logformat import (
    ISTIO_JSON_LABELS,
    ISTIO_TEXT_FORMAT,
    FormatError,
    JsonFormat,
    TextFormat,
    check_format,
)

# pilot/pkg/model/telemetry_logging.go EnvoyTextLogFormat, as Go concatenates it.
ISTIO_GO_SOURCE = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    '%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" '
    '%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" '
    '"%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    '%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% '
    '%ROUTE_NAME%\n'
)


def test_the_default_text_format_is_istios_byte_for_byte() -> None:
    assert ISTIO_TEXT_FORMAT == ISTIO_GO_SOURCE


def test_a_request_in_istios_default_format() -> None:
    line = TextFormat(None).line(http_record())
    assert line == (
        '[2026-12-01T15:40:20.123Z] "GET /productpage?u=normal HTTP/1.1" 200 - via_upstream - "-" 0 5183 37 - '
        '"10.0.0.9" "curl/8.5.0" "f2a4-11" "productpage:9080" "10.244.0.12:9080" '
        'outbound|9080||productpage.default.svc.cluster.local 10.244.0.5:41234 10.96.0.20:9080 10.244.0.5:51000 - '
        'default\n'
    )


def test_a_local_reply_shows_its_flag_and_details() -> None:
    line = TextFormat("%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %UPSTREAM_HOST%").line(
        http_record(status=503, flags="UF", upstream_host=None))
    assert line == "503 UF upstream_reset_before_response_started{connection_failure} -\n"


def test_an_opaque_tcp_connection_in_the_default_format() -> None:
    record = http_record(tcp=True, method="", path="", authority="", protocol="", request_headers={},
                         response_headers={}, status=0, bytes_received=12, bytes_sent=34, route_name=None)
    line = TextFormat(None).line(record)
    assert line.startswith('[2026-12-01T15:40:20.123Z] "- - -" 0 - - - "-" 12 34 37 - "-" "-" "-" "-" ')


def test_header_operators_take_an_alternative_and_a_length() -> None:
    record = http_record(request_headers={"x-envoy-original-path": "/orig"},
                         response_headers={"x-envoy-upstream-service-time": "12"})
    fmt = TextFormat("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %REQ(:PATH)% %REQ(:AUTHORITY):4% %RESP(X-ENVOY-UPSTREAM-"
                     "SERVICE-TIME)% %REQ(:METHOD)% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%")
    assert fmt.line(record) == "/orig /productpage?u=normal prod 12 GET 10.244.0.5\n"


def test_start_time_takes_a_strftime_pattern_with_envoys_milliseconds() -> None:
    assert TextFormat("%START_TIME(%Y/%m/%d %H:%M:%E3S)%").line(http_record()) == "2026/12/01 15:40:20.123\n"


def test_json_lines_carry_istios_default_fields_typed_as_envoy_types_them() -> None:
    document = json.loads(JsonFormat(()).line(http_record()))
    assert sorted(document) == sorted(name for name, _ in ISTIO_JSON_LABELS)
    assert list(document) == sorted(document)
    assert document["response_code"] == 200 and document["bytes_sent"] == 5183 and document["duration"] == 37
    assert document["method"] == "GET" and document["path"] == "/productpage?u=normal"
    assert document["upstream_cluster"] == "outbound|9080||productpage.default.svc.cluster.local"
    assert document["upstream_service_time"] is None and document["requested_server_name"] is None
    assert document["start_time"] == "2026-12-01T15:40:20.123Z"


def test_json_labels_of_a_config_replace_the_defaults() -> None:
    line = JsonFormat((("code", "%RESPONSE_CODE%"), ("who", "ua=%REQ(USER-AGENT)% ref=%REQ(REFERER)%"))).line(
        http_record())
    assert json.loads(line) == {"code": 200, "who": "ua=curl/8.5.0 ref=-"}


@pytest.mark.parametrize(("text", "problem"), [
    ("%DYNAMIC_METADATA(istio.mixer:status)%", "%DYNAMIC_METADATA(istio.mixer:status)% is not supported"),
    ("%REQ()%", "needs a header name"),
    ("%NOT_AN_OPERATOR%", "%NOT_AN_OPERATOR% is not supported"),
])
def test_unsupported_operators_are_refused(text: str, problem: str) -> None:
    with pytest.raises(FormatError) as raised:
        check_format(text)
    assert problem in str(raised.value)
    assert "REQ(" in raised.value.fix
