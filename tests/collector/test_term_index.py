"""term_index.TermIndex: which traces may show an annotationQuery term, and when it cannot say (the store walks)."""

from __future__ import annotations

from tracemesh_collector.term_index import TermIndex


def held_all(_: str) -> bool:
    return True


def test_a_listed_term_names_every_held_trace_that_shows_it_and_a_term_never_shown_none() -> None:
    index = TermIndex()
    index.add("a", [("http.status_code", "503"), "http.status_code", "retry"], held_all)
    index.add("b", [("http.status_code", "200"), "http.status_code"], held_all)
    index.add("a", [("http.status_code", "503")], held_all)  # a's later spans: listed once
    assert index.candidates([("http.status_code", "503")], held_all) == {"a"}
    assert index.candidates(["http.status_code"], held_all) == {"a", "b"}
    assert index.candidates(["http.status_code", "retry"], held_all) == {"a"}
    assert index.candidates([("http.status_code", "404")], held_all) == set()
    assert index.candidates(["error"], held_all) == set()
    assert index.candidates(["retry"], lambda key: key != "a") == set()  # a was evicted


def test_a_term_on_more_traces_than_the_bound_is_common_and_left_to_the_walk() -> None:
    index = TermIndex(max_postings=4)
    for number in range(5):
        index.add(f"t{number}", ["http.method", ("http.method", "GET")], held_all)
    index.add("t9", [("http.method", "PUT")], held_all)
    assert index.candidates(["http.method"], held_all) is None
    assert index.candidates(["http.method", ("http.method", "PUT")], held_all) == {"t9"}  # a known term narrows
    index.add("t10", ["http.method"], held_all)
    assert index.candidates(["http.method"], held_all) is None  # common stays common


def test_keys_no_longer_held_are_dropped_before_a_term_is_called_common() -> None:
    index = TermIndex(max_postings=4)
    held = {"t0", "t1"}
    for number in range(5):
        index.add(f"t{number}", ["error"], held.__contains__)  # t2..t4 already evicted when the list is full
    assert index.candidates(["error"], held.__contains__) == {"t0", "t1"}


def test_values_of_a_high_cardinality_key_past_the_bound_are_unknown_not_absent() -> None:
    index = TermIndex(max_values_per_key=3)
    for number in range(5):
        index.add(f"t{number}", [("guid:x-request-id", f"id-{number}")], held_all)
    assert index.candidates([("guid:x-request-id", "id-1")], held_all) == {"t1"}
    assert index.candidates([("guid:x-request-id", "id-4")], held_all) is None
    assert index.candidates([("guid:x-request-id", "never")], held_all) is None
    assert index.candidates([("other", "never")], held_all) == set()


def test_a_full_table_lists_no_new_term_and_then_knows_no_term_absent() -> None:
    index = TermIndex(max_terms=3)
    for number in range(10):
        index.add(f"t{number}", [f"word-{number}"], held_all)
    assert len(index._postings) == 3
    assert index.candidates(["word-0"], held_all) == {"t0"}
    assert index.candidates(["word-7"], held_all) is None
    assert index.candidates(["never"], held_all) is None


def test_a_common_term_is_listed_again_from_a_full_pass_once_it_is_rare_and_only_tried_once_per_turnover() -> None:
    index = TermIndex(max_postings=4)
    for number in range(5):
        index.add(f"burst{number}", ["error"], held_all)
    assert index.candidates(["error"], held_all) is None
    assert index.due_for_relisting(["error", "retry"], held_traces=100) == ["error"]
    assert not index.relist("error", ["a", "b", "c"])  # still on more than half the bound
    assert index.due_for_relisting(["error"], held_traces=100) == []  # not again before the store turns over
    for number in range(100):
        index.add(f"quiet{number}", [], held_all)
    assert index.due_for_relisting(["error"], held_traces=100) == ["error"]
    assert index.relist("error", ["late"])
    index.add("later", ["error"], held_all)
    assert index.candidates(["error"], held_all) == {"late", "later"}
    assert not index.relist("retry", [])  # never common: nothing to list again
