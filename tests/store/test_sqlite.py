"""The SQLite store's own: its layout's migration, crash safety under SIGKILL, bytes on disk, chunks against the head.

The crash tests kill a real child process with SIGKILL.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.samples import Quality, Sample
from gateway.store import AGGREGATES, SqliteStore, StoreClosed
from gateway.store.sqlite.schema import RUN_MAX, head_span
from tests.store.stores import EQ, T0, SealingStore, sample

ROOT = Path(__file__).resolve().parents[2]


# --- crash ------------------------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import asyncio, sys, time
    from gateway.samples import Quality, Sample
    from gateway.store import SqliteStore

    async def main(path, n, sealed):
        # sealed: the compactor seals and trims as fast as it can, so the kill may land in it too
        store = SqliteStore(path, **(dict(seal_after_s=0, seal_span_s=0, compact_check_s=0.02) if sealed else {}))
        await store.start()
        for k in range(0, n, 1000):
            store.write_samples([Sample("form1", f"channel[{i % 64 + 1}].voltage", 3.7, "V", 1e9 + i, 1e9 + i,
                                        Quality.GOOD, "") for i in range(k, min(n, k + 1000))])
        await store.flush()
        if sealed:
            assert await store.compact() > 0
        print("flushed", flush=True)
        i = 0
        while True:  # keep the writer busy so the kill lands mid-transaction
            store.write_samples([Sample("form1", "unflushed", float(i), "V", 2e9 + i, 2e9 + i, Quality.GOOD, "")] * 500)
            i += 1
            await asyncio.sleep(0)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "sealed"))
""")


@pytest.mark.parametrize("mode", ["head", "sealed"])
async def test_flushed_samples_survive_sigkill(tmp_path, mode):
    path = tmp_path / "store.sqlite"
    n = 50_000
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(n), mode], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        line = await asyncio.to_thread(child.stdout.readline)
        assert line.strip() == "flushed", child.stderr.read() if child.poll() is not None else line
    finally:
        child.send_signal(signal.SIGKILL)
        await asyncio.to_thread(child.wait)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL

    async with SqliteStore(path) as s:
        total = 0
        for ch in range(1, 65):
            total += len(await s.history("form1", f"channel[{ch}].voltage", 0, 2e9, limit=10**6))
        assert total == n
        counts = await s.history("form1", "channel[1].voltage", 0, 2e9, bucket_s=3600, agg="count")
        assert sum(r["count"] for r in counts) == len(range(0, n, 64))


LAYOUT_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE series (id INTEGER PRIMARY KEY, equipment TEXT NOT NULL, path TEXT NOT NULL,
                     unit TEXT NOT NULL DEFAULT '', UNIQUE (equipment, path));
CREATE TABLE samples (series_id INTEGER NOT NULL, ts REAL NOT NULL, gw REAL NOT NULL, value, value_text TEXT,
                      q INTEGER NOT NULL, reason TEXT);
CREATE TABLE blocks (series_id INTEGER NOT NULL, cell INTEGER NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL,
                     PRIMARY KEY (series_id, cell, lo)) WITHOUT ROWID;
CREATE TABLE rollup (series_id INTEGER NOT NULL, cell INTEGER NOT NULL, n INTEGER NOT NULL, nv INTEGER NOT NULL,
                     nbad INTEGER NOT NULL, sm REAL NOT NULL, mn, mx, ft REAL, fv, lt REAL, lv,
                     PRIMARY KEY (series_id, cell)) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema', '1'), ('cell_s', '10');
INSERT INTO series VALUES (1, 'coater1', 'speed', 'm/min'), (2, 'coater1', 'lot', '');
"""


def write_layout_1(path: Path) -> list[tuple]:
    """A store as the layout-1 version left it: rows sorted per batch, a block per (series, cell), rollup cells."""
    rows = [(1, T0 + i, T0 + i + 0.01, float(i), None, 0, None) for i in range(100)]
    rows += [(2, T0 + i * 10, T0 + i * 10 + 0.01, None, f"LOT-{i}", 0, None) for i in range(10)]
    conn = sqlite3.connect(path)
    conn.executescript(LAYOUT_1)
    conn.executemany("INSERT INTO samples VALUES (?,?,?,?,?,?,?)", rows)
    conn.execute("INSERT INTO blocks SELECT series_id, CAST(ts / 10 AS INTEGER), min(rowid), max(rowid) FROM samples "
                 "GROUP BY 1, 2")
    conn.execute("INSERT INTO rollup VALUES (1, 0, 1, 1, 0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)")
    conn.commit()
    conn.close()
    return rows


async def test_a_layout_1_store_is_migrated_at_open_and_then_sealed(tmp_path, caplog):
    path = tmp_path / "old.sqlite"
    write_layout_1(path)
    async with SealingStore(path) as s:
        assert "store layout 1 migrated to 4" in caplog.text
        before = await s.history("coater1", "speed", T0, T0 + 100)
        assert [r["value"] for r in before] == [float(i) for i in range(100)]
        assert {x.path: x.value for x in await s.latest()} == {"speed": 99.0, "lot": "LOT-9"}
        await s.flush()  # seals the old rows
        assert s.stats()["sealed_samples"] == 110
        assert await s.history("coater1", "speed", T0, T0 + 100) == before
        assert [r["value"] for r in await s.history("coater1", "lot", T0, T0 + 100)] == [f"LOT-{i}" for i in range(10)]
        rows = await s.history("coater1", "speed", T0, T0 + 100, bucket_s=1000, agg=["avg", "count"])
        assert [(r["count"], r["avg"]) for r in rows] == [(100, 49.5)]  # T0 + 0..99 s lie in one 1000 s bucket
        s.write_samples([sample("speed", 100.0, T0 + 100)])
        await s.flush()
        _, cursor = await s.read_since(0, 10)
        assert cursor == 111  # the outbox sequence goes on from the old rows
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("4",)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'rollup'").fetchone() is None
    conn.close()


async def test_a_layout_2_store_gets_its_block_index_by_cell_at_open(tmp_path, caplog):
    path = tmp_path / "old.sqlite"
    async with SqliteStore(path) as s:
        for k in range(30):
            s.write_samples([sample("speed", float(k), T0 + 5 * k), sample("lot", f"LOT-{k}", T0 + 5 * k)])
        await s.flush()
        before = await s.history("coater1", "speed", T0, T0 + 200)
        blocks = await asyncio.to_thread(lambda: sqlite3.connect(path).execute(
            "SELECT series_id, cell, lo, hi FROM blocks ORDER BY 1, 2, 3").fetchall())
    # As layout 2 kept them: keyed by series first.
    conn = sqlite3.connect(path)
    conn.executescript("""
        DROP TABLE blocks;
        CREATE TABLE blocks (series_id INTEGER NOT NULL, cell INTEGER NOT NULL, lo INTEGER NOT NULL,
                             hi INTEGER NOT NULL, PRIMARY KEY (series_id, cell, lo)) WITHOUT ROWID;
        UPDATE meta SET value = '2' WHERE key = 'schema';""")
    conn.executemany("INSERT INTO blocks VALUES (?,?,?,?)", blocks)
    conn.commit()
    conn.close()
    async with SqliteStore(path) as s:
        assert "store layout 2 migrated to 4" in caplog.text
        assert await s.history("coater1", "speed", T0, T0 + 200) == before
        assert {x.path: x.value for x in await s.latest()} == {"speed": 29.0, "lot": "LOT-29"}
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("4",)
    assert "PRIMARY KEY (cell, series_id, lo)" in conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'blocks'").fetchone()[0]
    assert conn.execute("SELECT series_id, cell, lo, hi FROM blocks ORDER BY 1, 2, 3").fetchall() == blocks
    conn.close()


async def test_a_layout_3_store_is_read_as_it_is_and_indexes_new_scans_by_runs(tmp_path, caplog):
    """Layout 3 indexed every (series, cell) of a commit by a block and had no runs table: its head reads as before,
    and what is written after the upgrade goes into runs."""
    path = tmp_path / "old.sqlite"
    async with SqliteStore(path) as s:
        for k in range(5):
            s.write_samples([sample(f"ch[{c}]", c + k / 10, T0 + k) for c in range(10)])
            await s.flush()
    conn = sqlite3.connect(path)
    runs = conn.execute("SELECT cell, last_sid, first_sid, lo FROM runs").fetchall()
    assert len(runs) == 5
    # As layout 3 kept them: a block per (series, cell) of each commit, no runs.
    conn.executemany("INSERT INTO blocks VALUES (?,?,?,?)",
                     [(sid, cell, lo + sid - first, lo + sid - first) for cell, last, first, lo in runs
                      for sid in range(first, last + 1)])
    conn.executescript("DROP TABLE runs; UPDATE meta SET value = '3' WHERE key = 'schema';")
    conn.close()
    async with SqliteStore(path) as s:
        assert [r["value"] for r in await s.history(EQ, "ch[7]", T0, T0 + 10)] == [7 + k / 10 for k in range(5)]
        s.write_samples([sample(f"ch[{c}]", c + 0.5, T0 + 5) for c in range(10)])
        await s.flush()
        assert [r["value"] for r in await s.history(EQ, "ch[7]", T0, T0 + 10)] == [7 + k / 10 for k in range(6)]
    async with SqliteStore(path) as s:
        assert {x.path: x.value for x in await s.latest()} == {f"ch[{c}]": c + 0.5 for c in range(10)}
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("4",)
    assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)
    conn.close()


async def test_sealing_drops_the_blocks_of_every_sealed_row_even_years_apart(tmp_path):
    async with SealingStore(tmp_path / "store.sqlite") as s:
        s.write_samples([sample("x", 1.0, 1000.0), sample("x", 2.0, T0), sample("y", 3.0, T0 + 3600)])
        await s.flush()  # seals every committed row
        s.write_samples([sample("x", 4.0, T0 + 7200)])
        await s.flush()
        blocks = await asyncio.to_thread(lambda: sqlite3.connect(s.path).execute(
            "SELECT count(*) FROM blocks").fetchone()[0])
        assert blocks == 0
        assert [r["value"] for r in await s.history("coater1", "x", 0, 2e9)] == [1.0, 2.0, 4.0]


async def test_the_heads_ends_are_looked_up_not_scanned(tmp_path):
    """The compactor, retention and the outbox's backlog ask for the head's first and last sequence every few
    seconds: that must not read the whole head (min() and max() in one SELECT do: 3 s at 10 M rows)."""
    path = tmp_path / "store.sqlite"
    async with SqliteStore(path) as s:
        s.write_samples([sample("speed", float(i), T0 + i) for i in range(1000)])
        await s.flush()
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM samples WHERE rowid <= 10")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    assert head_span(conn) == (11, 1000)
    conn.set_trace_callback(None)

    def plan(sql: str) -> str:
        return " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))

    assert "SEARCH samples" in plan(statements[0]) and "SCAN samples" not in plan(statements[0])
    assert "SCAN samples" in plan("SELECT min(rowid), max(rowid) FROM samples")  # what the check would catch
    conn.execute("DELETE FROM samples")
    assert head_span(conn) == (None, None)
    conn.close()


async def test_a_store_written_by_a_newer_version_is_refused_saying_what_to_do(tmp_path):
    path = tmp_path / "new.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); INSERT INTO meta VALUES ('schema', '9');")
    conn.close()
    s = SqliteStore(path)
    with pytest.raises(sqlite3.DatabaseError, match=r"new.sqlite: store layout 9 was written by a newer linegw.*"
                                                    r"move the file away"):
        await s.start()


async def test_sealed_process_data_takes_a_few_bytes_per_value(tmp_path):
    """An hour of 20 channels at 1 Hz, as a rack's Modbus scan records them (values rounded as the machine does)."""
    n_series, seconds = 20, 3600
    rnd = random.Random(7)
    async with SealingStore(tmp_path / "store.sqlite") as s:
        for t in range(seconds):
            ts = T0 + t + rnd.random() * 0.003  # the scan's own time jitter, as Modbus has no source time
            s.write_samples([Sample("rack1", f"channel[{c}].voltage", round(3.6 + 0.0001 * t + rnd.gauss(0, 0.0005), 4),
                                    "V", ts, ts, Quality.GOOD, "") for c in range(n_series)])
        await s.flush()
        conn = sqlite3.connect(tmp_path / "store.sqlite")
        used, = conn.execute("SELECT sum(pgsize) FROM dbstat WHERE name = 'chunks'").fetchone()
        conn.close()
        per_value = used / (n_series * seconds)
        assert per_value < 4, per_value  # 16 KiB pages: 3.1 here, the blobs 2.6 (the scan's time jitter: 1.9)
        rows = await s.history("rack1", "channel[3].voltage", T0, T0 + seconds + 1, bucket_s=600, agg="count")
        assert sum(r["count"] for r in rows) == seconds


_piece = st.lists(st.tuples(
    st.integers(0, 400),  # time, tenths of a second: duplicates and any order
    st.one_of(st.floats(allow_nan=False, width=32), st.integers(-10**6, 10**6), st.booleans(), st.none(),
              st.text(max_size=5)),
    st.sampled_from(list(Quality))), min_size=1, max_size=30)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(_piece, min_size=1, max_size=5), bucket=st.sampled_from([1.0, 7.0, 60.0]))
def test_history_from_chunks_is_the_history_from_the_head(tmp_path_factory, pieces, bucket):
    """Whatever is written, in whatever pieces and order: sealed into chunks, history answers exactly as from the head."""
    async def answers(cls: type[SqliteStore]) -> tuple:
        async with cls(tmp_path_factory.mktemp("s") / "store.sqlite") as s:
            for piece in pieces:
                s.write_samples([sample("v", None if q == Quality.BAD else v, T0 + t / 10, q, "" if q == 0 else "why")
                                 for t, v, q in piece])
                await s.flush()
            raw = await s.history(EQ, "v", T0 + 1, T0 + 35)
            return raw, await s.history(EQ, "v", T0, T0 + 41, bucket_s=bucket, agg=list(AGGREGATES)), await s.latest()

    head, sealed = asyncio.run(answers(SqliteStore)), asyncio.run(answers(SealingStore))
    assert head[0] == sealed[0] and head[2] == sealed[2]
    # Sums may add up in another order (a chunk's summary, then the rest): avg alike to rounding.
    assert [{**r, "avg": None} for r in head[1]] == [{**r, "avg": None} for r in sealed[1]]
    for h, c in zip(head[1], sealed[1]):
        assert h["avg"] == c["avg"] or h["avg"] == pytest.approx(c["avg"], rel=1e-12), (h, c)
    written = [t for piece in pieces for t, _, _ in piece]
    assert len(head[0]) == len([t for t in written if T0 + 1 <= T0 + t / 10 < T0 + 35])


def _number(v) -> float:
    return float(v) if isinstance(v, (int, float)) else math.nan


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(_piece, min_size=1, max_size=5), last_in_head=st.booleans(), window=st.tuples(
    st.integers(-10, 410), st.integers(0, 420)), limit=st.integers(1, 160))
def test_history_as_columns_is_every_sample_written_in_time_then_write_order(tmp_path_factory, pieces, last_in_head,
                                                                             window, limit):
    """Columns from chunks, the head, or both (the last piece left in the head): the samples written in
    [start, end), stably sorted by time, at most `limit`; a raw history() is the same rows as dicts."""
    start, end = T0 + window[0] / 10, T0 + window[1] / 10
    written = [sample("v", None if q == Quality.BAD else v, T0 + t / 10, q, "" if q == 0 else "why")
               for piece in pieces for t, v, q in piece]
    expected = sorted((s for s in written if start <= s.source_ts < end), key=lambda s: s.source_ts)[:limit]

    async def read() -> tuple:
        async with SealingStore(tmp_path_factory.mktemp("s") / "store.sqlite") as s:
            for i, piece in enumerate(pieces):
                s.write_samples(written[sum(map(len, pieces[:i])):][:len(piece)])
                await (SqliteStore.flush(s) if last_in_head and i == len(pieces) - 1 else s.flush())
            return (await s.history_columns(EQ, "v", start, end, limit=limit),
                    await s.history(EQ, "v", start, end, limit=limit))

    c, rows = asyncio.run(read())
    assert c.ts.tolist() == [s.source_ts for s in expected]
    assert c.gateway_ts.tolist() == [s.gateway_ts for s in expected]
    assert [(type(v), v) for v in c.values] == [(type(s.value), s.value) for s in expected]
    assert c.quality.tolist() == [int(s.quality) for s in expected] and c.reasons == [s.reason for s in expected]
    assert np.array_equal(c.number, [_number(s.value) for s in expected], equal_nan=True)
    assert rows == [{"ts": t, "value": v, "quality": q, "reason": r, "gateway_ts": g} for t, v, q, r, g in
                    zip(c.ts.tolist(), c.values, c.quality.tolist(), c.reasons, c.gateway_ts.tolist())]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.floats(-40.0, 40.0)),
                                 min_size=1, max_size=40), min_size=1, max_size=4))
def test_the_head_index_is_every_series_cell_and_rowid_range_of_the_rows(tmp_path_factory, batches):
    """The writer builds the head's index from the batch in hand; it must be what the rows themselves say: each
    (series, 10 s cell) of each commit once, as a block (its first to last rowid) or as its place in a run (one
    row each of consecutive series). Times on both sides of zero (cells truncate toward zero, as CAST does), out
    of order, several cells per series; and each series' head rows read through the index are its rows."""
    path = tmp_path_factory.mktemp("s") / "store.sqlite"

    async def write() -> list[list[tuple]]:
        async with SqliteStore(path) as s:
            for batch in batches:
                s.write_samples([sample(p, float(i), T0 + t if t > 0 else t) for i, (p, t) in enumerate(batch)])
                await s.flush()
            return [[(r["ts"], r["value"]) for r in await s.history(EQ, p, -1e12, 2e12)] for p in "abcd"]

    read = asyncio.run(write())
    conn = sqlite3.connect(path)
    index = conn.execute("SELECT series_id, cell, lo, hi FROM blocks").fetchall()
    for cell, last, first, lo in conn.execute("SELECT cell, last_sid, first_sid, lo FROM runs").fetchall():
        assert 2 <= last - first + 1 <= RUN_MAX
        index += [(sid, cell, lo + sid - first, lo + sid - first) for sid in range(first, last + 1)]
    commits = [0]
    for batch in batches:
        commits.append(commits[-1] + len(batch))
    expected = []
    for a, b in zip(commits, commits[1:]):  # each flush commits its batch alone
        expected += conn.execute("SELECT series_id, CAST(ts / 10 AS INTEGER), min(rowid), max(rowid) FROM samples "
                                 "WHERE rowid BETWEEN ? AND ? GROUP BY 1, 2", (a + 1, b)).fetchall()
    rows = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
    stored = [conn.execute("SELECT ts, value FROM samples s JOIN series ON series.id = s.series_id WHERE path = ? "
                           "ORDER BY ts, s.rowid", (p,)).fetchall() for p in "abcd"]
    conn.close()
    assert rows == commits[-1]
    assert sorted(index) == sorted(expected)
    assert read == stored


async def test_a_line_scan_is_indexed_by_runs_and_read_back_through_them(tmp_path):
    """Scans of many channels, one row per series per commit: one run row per RUN_MAX series, not a block per
    sample, and every series' rows, history and latest value read back through the runs."""
    channels, scans = 300, 5
    async with SqliteStore(tmp_path / "store.sqlite") as s:
        for k in range(scans):
            s.write_samples([sample(f"channel[{c}].voltage", c + k / 10, T0 + k) for c in range(channels)])
            await s.flush()
        conn = sqlite3.connect(s.path)
        n_blocks, n_runs = (conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("blocks", "runs"))
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
        conn.close()
        assert integrity == [("ok",)]
        assert n_blocks == 0 and n_runs == scans * -(-channels // RUN_MAX)
        for c in (0, 63, 64, 150, channels - 1):
            assert [r["value"] for r in await s.history(EQ, f"channel[{c}].voltage", T0, T0 + scans)] \
                == [c + k / 10 for k in range(scans)]
        latest = {x.path: x.value for x in await s.latest()}
        assert latest == {f"channel[{c}].voltage": c + (scans - 1) / 10 for c in range(channels)}
    async with SqliteStore(tmp_path / "store.sqlite") as s:  # latest as a restart finds it: from the head's runs
        assert {x.path: x.value for x in await s.latest()} == latest


async def test_close_waits_for_a_read_still_running_in_its_thread(tmp_path):
    """A task cancelled while it reads leaves the read running in its thread: the store's close waits for it.

    Closing the connection under that read made the read fail, or crashed the process (a forwarder stopped with
    the gateway, mid-read).
    """
    s = SqliteStore(tmp_path / "store.sqlite")
    await s.start()
    s.write_samples([sample("v", float(i), T0 + i) for i in range(10)])
    await s.flush()
    inside, go_on = threading.Event(), threading.Event()

    def slow_read(conn: sqlite3.Connection) -> int:
        inside.set()
        go_on.wait(10)
        return int(conn.execute("SELECT count(*) FROM samples").fetchone()[0])

    reader = asyncio.create_task(s._read(slow_read))
    await asyncio.to_thread(inside.wait, 10)
    closing = asyncio.create_task(s.close())
    await asyncio.sleep(0.3)
    assert not closing.done(), "the store closed while a read was still using its connection"
    go_on.set()
    assert await reader == 10
    await closing
    with pytest.raises(StoreClosed):
        await s.history(EQ, "v", T0, T0 + 10)
