"""On-disk storage for the collector (`tracemesh collector --storage sqlite:PATH`): a SQLite copy of the store.

The in-memory store stays the one that answers queries; this archive hears of every report it keeps
and every trace it evicts (SpanStore's SpanArchive seam) and writes them in one transaction per
ingest, so at start-up the store is loaded back from the file and a restart loses nothing. The
bounds apply to what is loaded too: traces evicted to fit are deleted from the file. WAL mode with
synchronous=NORMAL: a committed batch survives a crash of the collector (not of the machine, which
is what an embedded development backend needs). Standard library only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from tracemesh_collector import stored_span
from tracemesh_collector.store import DEFAULT_MAX_BYTES, DEFAULT_MAX_SPANS, SpanStore
from tracemesh_sidecar.spans.model import Span

SCHEME = "sqlite:"


class StorageError(Exception):
    """The storage option or file is unusable; the message says why and what to give instead."""


class SqliteArchive:
    def __init__(self, path: Path) -> None:
        try:
            self._connection = sqlite3.connect(path, isolation_level=None)
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=NORMAL")
            self._connection.execute("CREATE TABLE IF NOT EXISTS spans (trace_key TEXT NOT NULL, span BLOB NOT NULL)")
            self._connection.execute("CREATE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_key)")
        except sqlite3.Error as error:
            raise StorageError(f"cannot use {path} as SQLite span storage: {error}; give a writable file path "
                               f"(it is created if missing)") from None

    def spans(self) -> Iterator[Span]:
        """The stored reports, oldest write first."""
        for (data,) in self._connection.execute("SELECT span FROM spans ORDER BY rowid"):
            yield stored_span.decode(data)

    def record(self, kept: Sequence[Span], evicted_trace_keys: Sequence[str]) -> None:
        with self._connection:
            self._connection.execute("BEGIN")
            self._connection.executemany("DELETE FROM spans WHERE trace_key = ?",
                                         ((key,) for key in evicted_trace_keys))
            self._connection.executemany("INSERT INTO spans (trace_key, span) VALUES (?, ?)",
                                         ((span.trace_id[-16:], stored_span.encode(span)) for span in kept))

    def close(self) -> None:
        self._connection.close()


def parse_storage(option: str) -> Path | None:
    """`memory` -> None, `sqlite:PATH` -> PATH; StorageError for anything else."""
    if option == "memory":
        return None
    if option.startswith(SCHEME) and option[len(SCHEME):]:
        return Path(option[len(SCHEME):])
    raise StorageError(f"--storage must be 'memory' or 'sqlite:PATH' (e.g. sqlite:/var/lib/tracemesh/spans.db), "
                       f"got {option!r}")


def open_sqlite_store(path: Path, max_spans: int = DEFAULT_MAX_SPANS,
                      max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[SpanStore, SqliteArchive]:
    """A store loaded from the file at `path` and archiving to it from now on; close the archive when done."""
    archive = SqliteArchive(path)
    store = SpanStore(max_spans, max_bytes)
    try:
        evicted = store.load(archive.spans())
    except (sqlite3.Error, ValueError) as error:  # orjson's and the codec's errors are ValueErrors
        archive.close()
        raise StorageError(f"cannot read the spans stored in {path}: {error}; move the file away to start empty") \
            from None
    archive.record([], evicted)
    store.archive = archive
    return store, archive
