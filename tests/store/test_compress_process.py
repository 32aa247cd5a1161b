"""Sealing with the codec in a process of its own (store.compress_in: process, the gateway's default).

The same windows make the same chunks as in the compactor's thread, byte for byte;
an encoding process that dies costs a retry, never a sample; closing the store ends it.
"""

from __future__ import annotations

import math
import os
import signal
import sqlite3

from gateway.samples import Quality
from gateway.store import SqliteStore
from tests.store.stores import T0, sample
from tests.waiting import wait_for

SEALING = dict(seal_after_s=0, seal_span_s=0, compact_check_s=3600)  # only compact() seals


def samples(n: int = 3000) -> list:
    out = []
    for i in range(n):
        path = f"channel[{i % 7}].voltage"
        value = 3.2 + (i % 50) * 0.001 if i % 97 else math.nan
        out.append(sample(path, value, T0 + i * 0.1, Quality.BAD if i % 97 == 0 else Quality.GOOD,
                          "nan" if i % 97 == 0 else ""))
    out.append(sample("identification.model", "FX-512", T0))
    return out


async def sealed(path, compress_in: str) -> tuple[list[tuple], list[dict]]:
    store = SqliteStore(path, compress_in=compress_in, **SEALING)
    await store.start()
    try:
        store.write_samples(samples())
        await store.flush()
        assert await store.compact() == 3001
        history = await store.history("coater1", "channel[3].voltage", T0, T0 + 1000)
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        chunks = conn.execute("SELECT * FROM chunks ORDER BY rowid").fetchall()
    return chunks, history


async def test_a_process_makes_the_chunks_the_thread_makes(tmp_path):
    in_thread, history_thread = await sealed(tmp_path / "thread.sqlite", "thread")
    in_process, history_process = await sealed(tmp_path / "process.sqlite", "process")
    assert in_thread and in_process == in_thread
    assert len(history_process) == 429 and history_process == history_thread


async def test_an_encoder_killed_costs_a_retry_and_no_sample(tmp_path):
    store = SqliteStore(tmp_path / "s.sqlite", compress_in="process", **SEALING)
    await store.start()
    try:
        encoder = store._compactor.encoder
        assert encoder is not None
        store.write_samples(samples(700))
        await store.flush()
        assert await store.compact() == 701
        first = encoder.pid
        assert first is not None and encoder.starts == 1

        os.kill(first, signal.SIGKILL)
        await wait_for(lambda: encoder.pid is None, "the encoding process gone", timeout=10)
        store.write_samples([sample("channel[0].voltage", 3.3, T0 + 1000 + i) for i in range(50)])
        await store.flush()
        # The next window starts a new process; the samples were never anywhere but the head meanwhile.
        assert await store.compact() == 50
        assert encoder.starts == 2 and encoder.pid not in (None, first)
        rows = await store.history("coater1", "channel[0].voltage", T0 + 1000, T0 + 2000)
        assert [r["value"] for r in rows] == [3.3] * 50
        assert store.stats()["compact_errors"] == 0
    finally:
        await store.close()
    assert encoder.pid is None  # closing the store ends its encoder


async def test_an_encoder_that_fails_counts_an_error_and_the_window_stays_in_the_head(tmp_path):
    store = SqliteStore(tmp_path / "s.sqlite", compress_in="process", seal_after_s=0, seal_span_s=0,
                        compact_check_s=0.05)
    await store.start()
    try:
        encoder = store._compactor.encoder
        assert encoder is not None
        encoder.db = type(encoder.db)(tmp_path / "not-a-folder" / "x.sqlite", "NORMAL", 8, 1)  # cannot open
        store.write_samples(samples(200))
        await store.flush()
        await wait_for(lambda: store.stats()["compact_errors"] > 0, "a failed window counted", timeout=20)
        assert "unable to open database file" in store.stats()["last_error"]
        rows = await store.history("coater1", "channel[1].voltage", T0, T0 + 1000)
        assert len(rows) == 29 and store.stats()["sealed_samples"] == 0
    finally:
        await store.close()
