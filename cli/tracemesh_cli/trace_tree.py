"""A trace as a tree for the terminal: one aligned line per span, children under their parents.

Pure. Each line shows the span's service, name, kind, duration and status (the HTTP status
code, then ERROR and Envoy's response flags when the span has them). Children are found by
parentId and ordered by start time; a span whose parent is not in the trace becomes a root,
marked as such, so no span is ever left out.
"""

from __future__ import annotations

from collections.abc import Sequence

from tracemesh_sidecar.spans.model import Span

_BRANCH, _LAST, _PIPE, _SPACE = "├─ ", "└─ ", "│  ", "   "


def render_trace(spans: Sequence[Span]) -> str:
    """The header line and one line per span."""
    if not spans:
        return "(empty trace)"
    rows = [(prefix + (span.local_endpoint.service_name or "?"), span, note) for prefix, span, note in _walk(spans)]
    service_width = max(len(label) for label, _, _ in rows)
    name_width = max(len(span.name) for span in spans)
    duration_width = max(len(format_duration(span.duration)) for span in spans)
    lines = [_header(spans)]
    for label, span, note in rows:
        line = (f"{label:<{service_width}}  {span.name:<{name_width}}  {span.kind or '-':<6}  "
                f"{format_duration(span.duration):>{duration_width}}  {status(span)}{note}")
        lines.append(line)
    return "\n".join(lines)


def format_duration(microseconds: int) -> str:
    if microseconds < 1_000:
        return f"{microseconds}µs"
    if microseconds < 1_000_000:
        return f"{microseconds / 1_000:.2f}ms"
    return f"{microseconds / 1_000_000:.3f}s"


def status(span: Span) -> str:
    """`200`, `503 ERROR UF`, `- ERROR` (no HTTP status): what an SRE scans a trace for."""
    parts = [span.tags.get("http.status_code", "-")]
    if span.tags.get("error", "false") != "false":
        parts.append("ERROR")
    flags = span.tags.get("response_flags", "-")
    if flags != "-":
        parts.append(flags)
    return " ".join(parts)


def _header(spans: Sequence[Span]) -> str:
    timed = [span for span in spans if span.timestamp]
    total = max(s.timestamp + s.duration for s in timed) - min(s.timestamp for s in timed) if timed else 0
    count = f"{len(spans)} span{'s' if len(spans) != 1 else ''}"
    return f"Trace {spans[0].trace_id}  {count}  {format_duration(total)}"


def _walk(spans: Sequence[Span]) -> list[tuple[str, Span, str]]:
    """(tree prefix, span, note) in display order."""
    parents = _parent_indexes(spans)
    children: dict[int, list[int]] = {}
    for index, parent in enumerate(parents):
        if parent is not None:
            children.setdefault(parent, []).append(index)

    def start(index: int) -> tuple[int, str]:
        return spans[index].timestamp, spans[index].id

    rows: list[tuple[str, Span, str]] = []
    seen: set[int] = set()

    def visit(index: int, prefix: str, child_prefix: str) -> None:
        seen.add(index)
        span = spans[index]
        note = ""
        if parents[index] is None and span.parent_id:
            note = f"  (parent {span.parent_id} not in trace)"
        rows.append((prefix, span, note))
        kids = sorted((kid for kid in children.get(index, ()) if kid not in seen), key=start)
        for position, kid in enumerate(kids):
            last = position == len(kids) - 1
            visit(kid, child_prefix + (_LAST if last else _BRANCH), child_prefix + (_SPACE if last else _PIPE))

    # roots first; then whatever a parent cycle kept unreachable, so that nothing is dropped
    for index in sorted(range(len(spans)), key=lambda i: (parents[i] is not None, start(i))):
        if index not in seen:
            visit(index, "", "")
    return rows


def _parent_indexes(spans: Sequence[Span]) -> list[int | None]:
    by_id: dict[str, list[int]] = {}
    for index, span in enumerate(spans):
        by_id.setdefault(span.id, []).append(index)
    parents: list[int | None] = []
    for index, span in enumerate(spans):
        same_id = [other for other in by_id[span.id] if other != index]
        if span.shared and same_id:
            # Zipkin's shared-span model: the server half of an RPC reuses the client's span id
            parents.append(same_id[0])
            continue
        candidates = [other for other in by_id.get(span.parent_id or "", []) if other != index]
        # under a shared pair, the work belongs to the server half
        shared = [other for other in candidates if spans[other].shared]
        parents.append(shared[0] if shared else candidates[0] if candidates else None)
    return parents
