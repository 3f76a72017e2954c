"""Trace keys per annotationQuery term, so that a search for a rare tag or annotation visits only traces that have it.

Zipkin's annotationQuery has two kinds of term: `key=value` (a tag with that value), listed here under
the (key, value) pair, and a bare `key` (a tag with that key, or an annotation with that value), listed
under the string. A trace is listed under every term one of its spans shows. A search intersects the
lists of its terms and tests what is left with the whole query, newest first (the store does,
query.matches): the lists must hold every held trace that shows the term, and may hold more (traces
evicted since, or whose merged spans lost a reported tag).

The lists stay small, and a term whose list could not be kept whole is no longer known to the index:
- a term shown by more than `max_postings` held traces (status 200, method GET) is common: its list
  is dropped, and its searches walk the time index, where a common term is found at once. A term
  that was common may be rare now (a burst of errors, since evicted): a walk that went far without
  filling its limit has the store list it again from a pass over the traces it holds (`relist`);
- a key that has shown `max_values_per_key` values (request ids, URLs with ids) has no list for its
  further values, and a search for one of those walks;
- past `max_terms` lists no new term is listed, and any term not listed then is unknown.
A term the index has never been shown, while it lists every term it is shown, is on no trace held:
that search answers at once. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final

from tracemesh_sidecar.spans.model import Span

Term = tuple[str, str] | str  # a tag (key, value), or a bare key / annotation value
# the list a common term maps to: one lookup per term on the ingest path, never appended to
_COMMON: Final[list[str]] = []


def add_terms(terms: set[Term], span: Span) -> None:
    """Add the terms `span` shows to `terms` (set updates, not a generator: this runs for every span stored)."""
    terms.update(span.tags.items())
    terms.update(span.tags)
    if span.annotations:
        terms.update(annotation.value for annotation in span.annotations)


def shows(span: Span, term: Term) -> bool:
    """Whether `span` shows `term`, as add_terms lists it."""
    if isinstance(term, tuple):
        return span.tags.get(term[0]) == term[1]
    return term in span.tags or any(annotation.value == term for annotation in span.annotations)


def query_terms(annotation_query: Mapping[str, str]) -> list[Term]:
    """A TraceQuery's annotationQuery (key -> value, "" for a bare key) as terms."""
    return [(key, value) if value else key for key, value in annotation_query.items()]


class TermIndex:
    # At worst 16 384 lists of 512 trace keys, 64 MB of references (a mesh's tags keep a few hundred short lists).
    def __init__(self, max_postings: int = 512, max_values_per_key: int = 256, max_terms: int = 16_384) -> None:
        self.max_postings = max_postings
        self.max_values_per_key = max_values_per_key
        self.max_terms = max_terms
        # in the order the traces showed the term (keys may repeat), or _COMMON
        self._postings: dict[Term, list[str]] = {}
        self._values_per_key: dict[str, int] = {}
        self._full = False  # a term went unlisted for max_terms: from then on an unlisted term is unknown
        self._updates = 0  # add() calls: the clock of relist's retries
        self._relisted_at: dict[Term, int] = {}

    def add(self, trace_key: str, terms: Iterable[Term], held: Callable[[str], bool]) -> None:
        """`trace_key`'s spans show `terms`; `held` says which trace keys the store still holds."""
        self._updates += 1
        postings_of = self._postings
        for term in terms:
            postings = postings_of.get(term)
            if postings is None:
                postings = self._new_list(term)
                if postings is None:
                    continue
            elif postings is _COMMON or (postings and postings[-1] == trace_key):  # a trace's spans come together
                continue
            postings.append(trace_key)
            if len(postings) > self.max_postings:
                self._compact(term, postings, held)

    def candidates(self, terms: Iterable[Term], held: Callable[[str], bool]) -> set[str] | None:
        """The held trace keys that may show every term; None when no term is known (the caller walks)."""
        found: set[str] | None = None
        for term in terms:
            postings = self._postings.get(term)
            if postings is _COMMON:
                continue
            if postings is None:
                if self._known_absent(term):
                    return set()
                continue
            keys = {key for key in postings if held(key)} if found is None else found.intersection(postings)
            found = keys
            if not found:
                return found
        return found

    def due_for_relisting(self, terms: Iterable[Term], held_traces: int) -> list[Term]:
        """Those of `terms` that are common and were not tried by relist in the last `held_traces` updates
        (a pass that finds a term still common is paid for again only once the store has turned over)."""
        return [term for term in terms if self._postings.get(term) is _COMMON
                and self._updates - self._relisted_at.get(term, -held_traces) >= held_traces]

    def relist(self, term: Term, trace_keys: list[str]) -> bool:
        """List a common term again from a pass over every held trace (`trace_keys`: those that show it),
        unless it is still on too many of them; whether it was."""
        if self._postings.get(term) is not _COMMON:
            return False
        self._relisted_at[term] = self._updates
        if len(trace_keys) > self.max_postings // 2:
            return False
        self._postings[term] = trace_keys
        return True

    def _new_list(self, term: Term) -> list[str] | None:
        if isinstance(term, tuple):
            key = term[0]
            seen = self._values_per_key.get(key, 0)
            if seen >= self.max_values_per_key:
                return None
            self._values_per_key[key] = seen + 1
        if len(self._postings) >= self.max_terms:
            self._full = True
            return None
        postings: list[str] = []
        self._postings[term] = postings
        return postings

    def _compact(self, term: Term, postings: list[str], held: Callable[[str], bool]) -> None:
        """Drop the keys no longer held and the repeats; a term still on too many traces becomes common."""
        kept = [key for key in dict.fromkeys(postings) if held(key)]
        if len(kept) > self.max_postings // 2:  # so that a list is compacted again only after as many adds
            self._postings[term] = _COMMON
        else:
            postings[:] = kept

    def _known_absent(self, term: Term) -> bool:
        """An unlisted term: on no held trace, unless the bounds kept it from being listed."""
        if self._full:
            return False
        return not (isinstance(term, tuple) and self._values_per_key.get(term[0], 0) >= self.max_values_per_key)
