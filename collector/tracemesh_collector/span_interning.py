"""Equal strings and endpoints of stored spans as one shared object each, so a stored span holds little of its own.

A decoded span brings its own copy of every string: a mesh span's ~20 tags repeat the same keys and
mostly the same values (method, status, protocol, cluster, mesh id, node id...) on every span, and
its endpoints the same few (service, address, port). The store hands each span it keeps to
`SpanInterner.compact`, which points its fields at one shared copy of each, roughly halving what
a sidecar span occupies (`python -m bench collector` measures it).

The tables are bounded so that unique values (request ids, URLs with ids in them) cannot grow
them without end: a tag key stops having new values shared once it has shown `max_values_per_key`
distinct values (it is then high-cardinality), and no table takes more than `max_entries` entries.
What is unique to a trace is still repeated within it, by spans that arrive moments apart: its trace
id, a parent's span id as its children's `parentId`, its request id on every hop. Those are shared
through a table of the strings seen lately, emptied whenever it reaches `max_recent` entries.
An OTLP span's typed attributes mostly repeat its tags (a text attribute becomes the tag of the same
key): `compact` keeps only the typed values and the texts its tags lack, with the list of keys in
order (shared by the spans of one shape) and a reference to the tags; `otlp_attributes` gives the
whole dict back. Spans without annotations (links, events) share one empty list. `compact` also
says how many bytes a span brought that nothing shared yet, for the store's byte bound. Nothing
shared is ever mutated: the store's spans are read-only after `add`, and merging builds new spans
and dicts (trace_merge). Pure.
"""

from __future__ import annotations

from sys import getsizeof
from typing import Any, Final, TypeVar

from tracemesh_sidecar.spans.model import AttributeValue, Endpoint, OtlpDetail, Span

_K = TypeVar("_K")
_V = TypeVar("_V")

# What a compact span has of its own when it has no annotations (links, events), or an OTLP span no attribute
# its tags lack: one empty list (dict) for all of them (56 bytes each a span), read-only as all that is shared.
_EMPTY_LIST: Final[list[Any]] = []
_EMPTY_ATTRIBUTES: Final[dict[str, AttributeValue]] = {}

_EndpointKey = tuple[str | None, str | None, str | None, int | None]
_Tag = tuple[str, str]


class SpanInterner:
    def __init__(self, max_values_per_key: int = 256, max_entries: int = 65_536, max_recent: int = 65_536) -> None:
        self.max_values_per_key = max_values_per_key
        self.max_entries = max_entries
        self.max_recent = max_recent
        self._recent: dict[str, str] = {}  # ids and high-cardinality values, as seen lately
        self._names: dict[str, str] = {}  # span names, tag and attribute keys, scope names
        # (key, value) -> the shared pair: one lookup per tag, the item tuple dict.items() yields as the key
        self._tags: dict[tuple[str, object], _Tag] = {}
        self._values_per_key: dict[str, int] = {}
        self._endpoints: dict[_EndpointKey, Endpoint] = {}
        self._key_lists: dict[tuple[str, ...], tuple[str, ...]] = {}  # OTLP spans' attribute keys, in order
        self._unshared_bytes = 0  # what the span being compacted brings that nothing shared yet

    def compact(self, span: Span) -> int:
        """Point `span`'s name, tags and endpoints at the shared copies (its values are unchanged); the bytes of
        the strings, endpoints and pairs it brought that had no shared copy yet (what it adds beyond its own
        objects: store.approximate_bytes)."""
        self._unshared_bytes = 0
        shared = self._tags
        recent = self._recent_copy
        span.trace_id = recent(span.trace_id)
        span.id = recent(span.id)
        if span.parent_id is not None:
            span.parent_id = recent(span.parent_id)
        span.name = self._name(span.name)
        compact: dict[str, str] = {}
        # A loop, not dict(generator): a third less time per span. `shared.get` called as such, which mypyc makes a
        # native dict lookup, where a bound method kept in a local is a generic call (callgrind: ~200 instructions a
        # tag more).
        for item in span.tags.items():
            pair = shared.get(item) or self._admit(item)
            compact[pair[0]] = pair[1]
        span.tags = compact
        if not span.annotations:
            span.annotations = _EMPTY_LIST
        span.local_endpoint = self._endpoint(span.local_endpoint)
        if span.remote_endpoint is not None:
            span.remote_endpoint = self._endpoint(span.remote_endpoint)
        if span.otlp is not None:
            self._compact_detail(span.otlp, compact)
        return self._unshared_bytes

    def _compact_detail(self, detail: OtlpDetail, tags: dict[str, str]) -> None:
        """An OTLP span's text attributes left to its tags, which hold them already; its key list shared."""
        if detail.attribute_keys is not None:
            return
        shared = self._tags
        typed: dict[str, AttributeValue] = {}
        for item in detail.attributes.items():
            key, value = item
            if value.__class__ is not str:  # a typed value; True == 1 == 1.0 would find each other's pair
                typed[self._name(key)] = value
            elif tags.get(key) != value:  # a text value the tags do not hold (an endpoint's, say)
                pair = shared.get(item) or self._admit(item)
                typed[pair[0]] = pair[1]
        keys = tuple(detail.attributes)
        detail.attribute_keys = self._shared(self._key_lists, keys, keys)
        detail.attribute_tags = tags
        detail.attributes = typed or _EMPTY_ATTRIBUTES
        if not detail.links:
            detail.links = _EMPTY_LIST
        if not detail.events:
            detail.events = _EMPTY_LIST
        detail.scope_name = self._name(detail.scope_name)
        detail.scope_version = self._name(detail.scope_version)

    def _name(self, name: str) -> str:
        return self._shared(self._names, name, name)

    def _admit(self, tag: tuple[str, object]) -> _Tag:
        """A tag not shared yet: shared from now on unless its key is high-cardinality or the table is full."""
        key, value = self._name(tag[0]), tag[1]
        assert isinstance(value, str)
        seen = self._values_per_key.get(key, 0)
        if seen >= self.max_values_per_key or len(self._tags) >= self.max_entries:
            return key, self._recent_copy(value)
        self._values_per_key[key] = seen + 1
        shared = self._tags[key, value] = (key, value)
        self._unshared_bytes += getsizeof(value) + getsizeof(shared)
        return shared

    def _recent_copy(self, text: str) -> str:
        recent = self._recent
        shared = recent.get(text)
        if shared is None:
            if len(recent) >= self.max_recent:
                recent.clear()
            shared = recent[text] = text
            self._unshared_bytes += getsizeof(text)
        return shared

    def _endpoint(self, endpoint: Endpoint) -> Endpoint:
        key = (endpoint.service_name, endpoint.ipv4, endpoint.ipv6, endpoint.port)
        return self._shared(self._endpoints, key, endpoint)

    def _shared(self, table: dict[_K, _V], key: _K, value: _V) -> _V:
        """The copy `table` holds for `key`, else `value`, which becomes the copy while the table has room."""
        shared = table.get(key)
        if shared is not None:
            return shared
        if len(table) < self.max_entries:
            table[key] = value
        self._unshared_bytes += getsizeof(value)
        return value


def otlp_attributes(detail: OtlpDetail) -> dict[str, AttributeValue]:
    """An OTLP span's own attributes, typed and in order, whether or not SpanInterner.compact left some to its tags."""
    keys, tags = detail.attribute_keys, detail.attribute_tags
    if keys is None or tags is None:
        return detail.attributes
    typed = detail.attributes
    return {key: typed[key] if key in typed else tags[key] for key in keys}
