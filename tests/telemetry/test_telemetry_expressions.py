"""The CEL subset for tagOverrides values and access-log filters (telemetry/expressions.py).

The forms are the ones Istio's docs and tests use: tests/integration/telemetry/api/testdata/accesslog/filter.yaml
(`request.path == '/filter-test'`), the Telemetry reference (`response.code >= 400`, `string(destination.port)`),
the older peer-metadata form (`upstream_peer.labels['app'].value`) and `filter_state.upstream_peer.labels[...]`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tracemesh_sidecar.telemetry.expressions import (
    EvaluationError,
    ExpressionError,
    filter_matches,
    parse_expression,
    tag_value,
)


class Attrs:
    def __init__(self, **values: object) -> None:
        self.values = {name.replace("__", "."): value for name, value in values.items()}

    def attribute(self, name: str) -> object:
        return self.values[name]


REQUEST = Attrs(
    request__host="reviews:9080", request__path="/filter-test?x=1", request__url_path="/filter-test",
    request__method="GET", request__headers={"user-agent": "curl/8", "x-user": "jason"},
    request__duration=timedelta(milliseconds=1500),
    response__code=503, response__flags="UF", response__headers={"grpc-status": "14"},
    destination__port=9080, source__address="10.0.0.7", connection__mtls=False,
    upstream_peer__labels={"app": "reviews", "custom-label": "blue"}, upstream_peer__workload="reviews-v1",
    downstream_peer__labels={"custom-label": "red"}, xds__cluster_name="outbound|9080||reviews",
)


def value(text: str) -> object:
    return parse_expression(text).evaluate(REQUEST)


@pytest.mark.parametrize(("text", "expected"), [
    ("request.path == '/filter-test?x=1'", True),
    ("request.url_path == '/filter-test'", True),
    ('request.method == "GET"', True),
    ("response.code >= 400", True),
    ("response.code >= 500 && response.code < 600", True),
    ("response.code < 500", False),
    ("response.code != 503", False),
    ("response.code > 503 || response.flags == 'UF'", True),
    ("!(response.code == 200)", True),
    ("response.code in [500, 503]", True),
    ("'x-user' in request.headers", True),
    ("request.headers['x-user'] == 'jason'", True),
    ("request.headers.x-user == 'jason'", None),  # not CEL: a '-' ends the expression (ExpressionError below)
    ("request.host.startsWith('reviews')", True),
    ("request.host.endsWith(':9080')", True),
    ("request.headers['user-agent'].contains('curl')", True),
    ("request.path.matches('^/filter')", True),
    ("has(request.headers.referer)", False),
    ("has(request.headers['x-user'])", True),
    ("has(response.code)", True),
    ("has(request.referer)", False),
    ("string(destination.port)", "9080"),
    ("int('42') == 42", True),
    ("size(request.headers)", 2),
    ("request.duration > duration('1s')", True),
    ("string(request.duration)", "1.5s"),
    ("upstream_peer.labels['app'].value", "reviews"),
    ("upstream_peer.labels['app']", "reviews"),
    ("filter_state.upstream_peer.labels['custom-label']", "blue"),
    ("filter_state.downstream_peer.labels['custom-label']", "red"),
    ("upstream_peer.workload", "reviews-v1"),
    ("response.code >= 500 ? 'error' : 'ok'", "error"),
    ("connection.mtls", False),
    ("xds.cluster_name", "outbound|9080||reviews"),
    ("response.headers['grpc-status']", "14"),
])
def test_supported_forms_evaluate_as_cel_does(text: str, expected: object) -> None:
    if expected is None:
        with pytest.raises(ExpressionError):
            parse_expression(text)
        return
    assert value(text) == expected


@pytest.mark.parametrize(("text", "problem"), [
    ("foo.bar == 1", "attribute 'foo.bar' is not supported"),
    ("request.nope", "attribute 'request.nope' is not supported"),
    ("filter_state['wasm.istio_responseClass']", "attribute 'filter_state' is not supported"),
    ("request.host.lower()", "method 'lower' is not supported"),
    ("uint(response.code)", "function 'uint' is not supported"),
    ("request.headers[1]", "must be a quoted string"),
    ("response.code >= ", "unexpected 'end of expression'"),
    ("response.code + 1", "cannot read '+ 1'"),
    ("(response.code", "expected ')'"),
    ("response.code 400", "unexpected '400'"),
    ("has(request.host == 'a')", "expected ')'"),
    ("", "unexpected 'end of expression'"),
])
def test_unsupported_forms_fail_with_a_clear_error(text: str, problem: str) -> None:
    with pytest.raises(ExpressionError) as raised:
        parse_expression(text)
    assert problem in str(raised.value)
    assert raised.value.fix


def test_missing_values_are_errors_that_tags_and_filters_absorb() -> None:
    missing = parse_expression("request.headers['x-absent']")
    with pytest.raises(EvaluationError):
        missing.evaluate(REQUEST)
    assert tag_value(missing, REQUEST) == "unknown"  # Istio's stats: a tag with no value is `unknown`
    assert not filter_matches(parse_expression("request.headers['x-absent'] == 'a'"), REQUEST)
    assert tag_value(parse_expression("request.referer"), Attrs()) == "unknown"


def test_logical_operators_absorb_an_error_when_the_other_side_decides() -> None:
    assert value("request.headers['x-absent'] == 'a' || response.code == 503") is True
    assert value("request.headers['x-absent'] == 'a' && response.code == 200") is False
    with pytest.raises(EvaluationError):
        value("request.headers['x-absent'] == 'a' || response.code == 200")


def test_type_mismatches_are_errors_not_false() -> None:
    with pytest.raises(EvaluationError):
        value("response.code == '503'")
    with pytest.raises(EvaluationError):
        value("!response.code")
    assert not filter_matches(parse_expression("request.host"), REQUEST)  # a non-bool filter logs nothing


def test_tag_values_render_as_cel_strings() -> None:
    assert tag_value(parse_expression("response.code"), REQUEST) == "503"
    assert tag_value(parse_expression("connection.mtls"), REQUEST) == "false"
    assert tag_value(parse_expression("'literal'"), REQUEST) == "literal"
    assert tag_value(parse_expression('"it\\"s"'), REQUEST) == 'it"s'
