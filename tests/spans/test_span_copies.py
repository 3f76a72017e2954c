"""Spans copy and pickle as equal spans in the compiled build too, where Span, Annotation and Endpoint are native
classes that write their own `__init__` (created only through it: native_dataclasses.py)."""

from __future__ import annotations

import copy
import pickle

from tracemesh_sidecar.spans.model import Annotation, Endpoint, OtlpDetail, Span


def _span() -> Span:
    return Span("4e441824ec2b6a44", "0000000000000002", "get /reviews", "CLIENT", 1_796_139_620_123_456, 37_900,
                Endpoint("productpage.default", "10.244.0.5", None, 9080), parent_id="0000000000000001",
                remote_endpoint=Endpoint("reviews.default", "10.244.0.12"), tags={"http.status_code": "200"},
                annotations=[Annotation(1_796_139_620_123_500, "ws")], debug=True, shared=False,
                otlp=OtlpDetail(scope_name="tracemesh"))


def test_a_span_copies_deep_copies_and_pickles_as_an_equal_span_with_its_otlp_detail() -> None:
    span = _span()
    for copied in (copy.copy(span), copy.deepcopy(span), pickle.loads(pickle.dumps(span))):
        assert copied == span
        assert copied.otlp == span.otlp  # not compared by ==
    deep = copy.deepcopy(span)
    assert deep.tags is not span.tags and deep.local_endpoint is not span.local_endpoint
    assert copy.copy(span).tags is span.tags


def test_the_defaults_of_a_span_are_new_containers_for_each_span() -> None:
    first, second = (Span("4e441824ec2b6a44", "0000000000000002", "", None, 0, 0, Endpoint()) for _ in range(2))
    assert first.tags == {} and first.annotations == [] and first.parent_id is None and first.otlp is None
    assert first.tags is not second.tags and first.annotations is not second.annotations
