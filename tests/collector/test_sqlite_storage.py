"""`--storage sqlite:PATH`: the store's contents survive a restart of `tracemesh collector`, bounds included."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from collector_process import COMMAND, EPHEMERAL, collector_process
from collector_samples import NOW_US, bookinfo_trace, trace_id
from test_jaeger_fidelity import TRACE_ID, rich_request

from tracemesh_collector import stored_span
from tracemesh_collector.sqlite_archive import StorageError, open_sqlite_store, parse_storage
from tracemesh_sidecar.spans import otlp, zipkin_json

MINUTE = 60_000_000


def test_a_span_round_trips_through_its_stored_form_with_its_otlp_detail() -> None:
    spans = otlp.decode_request_proto(rich_request().SerializeToString())
    for span in spans:
        again = stored_span.decode(stored_span.encode(span))
        assert again == span and again.otlp == span.otlp and again.otlp is not None


def test_reopening_the_file_gives_back_the_store_and_evictions_are_deleted(tmp_path: Path) -> None:
    path = tmp_path / "spans.db"
    store, archive = open_sqlite_store(path, max_spans=14)
    store.add(bookinfo_trace(trace_id(1), NOW_US - 3 * MINUTE))
    store.add(bookinfo_trace(trace_id(2), NOW_US - 2 * MINUTE))
    store.add(bookinfo_trace(trace_id(3), NOW_US - MINUTE))  # 21 > 14: trace 1 goes, from the file too
    store.add(otlp.decode_request_proto(rich_request().SerializeToString()))  # 2 more: trace 2 goes
    expected = {key: store.get_trace(key) for key in (trace_id(3), TRACE_ID)}
    archive.close()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM spans").fetchone() == (9,)
    reopened, archive = open_sqlite_store(path, max_spans=14)
    assert {key: reopened.get_trace(key) for key in expected} == expected
    assert reopened.get_trace(trace_id(1)) == [] == reopened.get_trace(trace_id(2))
    assert [span.otlp for span in reopened.get_trace(TRACE_ID)] == [span.otlp for span in expected[TRACE_ID]]
    archive.close()
    smaller, archive = open_sqlite_store(path, max_spans=5)  # a smaller bound at start: the oldest trace goes
    assert (smaller.span_count, smaller.get_trace(TRACE_ID) != []) == (2, True)
    archive.close()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM spans").fetchone() == (2,)


@pytest.mark.parametrize("option", ["sqlite:", "postgres://db", "SQLite:/tmp/x", ""])
def test_a_bad_storage_option_says_what_to_give(option: str) -> None:
    with pytest.raises(StorageError, match="'memory' or 'sqlite:PATH'"):
        parse_storage(option)


def test_an_unusable_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "not-a-db").write_bytes(b"this is not a SQLite database" * 100)
    with pytest.raises(StorageError, match="not-a-db"):
        open_sqlite_store(tmp_path / "not-a-db")


async def test_a_restarted_collector_loses_nothing(tmp_path: Path) -> None:
    storage = f"sqlite:{tmp_path / 'spans.db'}"
    trace = bookinfo_trace(trace_id(1), NOW_US - MINUTE)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with collector_process("--storage", storage) as first:
            assert "(0 loaded)" in first.banner
            async with http.post(f"{first.urls['Zipkin']}/api/v2/spans", data=zipkin_json.encode_spans(trace),
                                 headers={"Content-Type": "application/json"}) as response:
                assert response.status == 202
            async with http.post(f"{first.urls['OTLP/HTTP']}/v1/traces", data=rich_request().SerializeToString(),
                                 headers={"Content-Type": "application/x-protobuf"}) as response:
                assert response.status == 200
            before = await answers(http, first.urls)
        async with collector_process("--storage", storage) as second:
            assert "(9 loaded)" in second.banner
            assert await answers(http, second.urls) == before


async def answers(http: aiohttp.ClientSession, urls: dict[str, str]) -> list[object]:
    found = []
    for url in (f"{urls['Zipkin']}/api/v2/trace/{trace_id(1)}", f"{urls['Zipkin']}/api/v2/services",
                f"{urls['Jaeger']}/api/traces/{TRACE_ID}", f"{urls['Zipkin']}/api/v2/trace/{TRACE_ID}"):
        async with http.get(url) as response:
            assert response.status == 200
            found.append(await response.json())
    return found


@pytest.mark.parametrize(("options", "says"), [
    (["--storage", "postgres://db"], "--storage must be 'memory' or 'sqlite:PATH'"),
    (["--max-bytes", "0"], "must be a positive size like 256M"),
    (["--max-bytes", "lots"], "must be an integer"),
])
async def test_the_command_refuses_bad_storage_options(options: list[str], says: str) -> None:
    process = await asyncio.create_subprocess_exec(*COMMAND, *EPHEMERAL, *options, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    _, errors = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode in (1, 2)
    assert says in errors.decode()


def test_a_batch_beyond_the_bound_leaves_on_disk_only_what_memory_keeps(tmp_path: Path) -> None:
    store, archive = open_sqlite_store(tmp_path / "spans.db", max_spans=7)
    store.add(bookinfo_trace(trace_id(1), NOW_US - 2 * MINUTE) + bookinfo_trace(trace_id(2), NOW_US - MINUTE))
    archive.close()
    reopened, archive = open_sqlite_store(tmp_path / "spans.db", max_spans=100)
    assert (reopened.span_count, reopened.get_trace(trace_id(1))) == (7, [])
    archive.close()
