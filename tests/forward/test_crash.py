"""A forwarder SIGKILLed mid-stream; a new one resumes from the persisted cursor: no gaps, no stray points."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from gateway.forward.config import InfluxForward
from gateway.forward.influx import InfluxForwarder
from gateway.samples import Quality, Sample
from gateway.store.sqlite import SqliteStore
from tests.forward.conftest import VictoriaMetrics, assert_resends_identical
from tests.waiting import wait_for

CHILD_BATCH = 20
CHILD = f"""
import asyncio, sys
from gateway.forward.config import InfluxForward
from gateway.forward.influx import InfluxForwarder
from gateway.store.sqlite import SqliteStore
async def main():
    store = SqliteStore(sys.argv[1]); await store.start()
    cfg = InfluxForward(url=sys.argv[2], batch_size={CHILD_BATCH}, poll_s=0.05)
    await InfluxForwarder(store, cfg, "L1", {{"c1": "coater"}}).run()
asyncio.run(main())
"""


def _cursor(db: Path) -> int:
    """The cursor the child has committed, read beside it (WAL lets a reader in while it writes)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT value FROM cursors WHERE name = 'influx'").fetchone()
        return row[0] if row else 0
    finally:
        conn.close()


async def test_sigkill_then_resume(tmp_path: Path, vm: VictoriaMetrics) -> None:
    n = 6000  # 300 batches of 20: far more than get forwarded before the kill
    t0 = float(int(time.time()) - 3600)
    db = tmp_path / "g.db"
    store = SqliteStore(db)
    await store.start()
    await store.write_samples_async([Sample("c1", "web.speed", float(i), "m/min", t0 + i / 10, t0, Quality.GOOD)
                                     for i in range(n)])
    await store.close()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), vm.url], cwd=Path(__file__).parents[2])
    try:
        await wait_for(lambda: _cursor(db) >= 10 * CHILD_BATCH, "the child to forward ten batches", timeout=60,
                       interval=0.01)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    at_kill = _cursor(db)
    assert 10 * CHILD_BATCH <= at_kill < n  # killed mid-stream: most of the stream is left to resume
    store = SqliteStore(db)
    await store.start()
    try:
        fwd = InfluxForwarder(store, InfluxForward(url=vm.url, batch_size=500, poll_s=0.05), "L1", {"c1": "coater"})
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(fwd.run())
            await wait_for(lambda: fwd.stats()["cursor"] == n, "the resumed forwarder at the end", timeout=60)
            task.cancel()
        assert fwd.stats()["written"] == n - at_kill  # it started from the cursor the child left
        await vm.searchable('{__name__="coater_speed"}', n)
        # The batch in flight at the kill may have landed without its cursor: it is sent again,
        # identical (same series, timestamp, value), which InfluxDB overwrites. One batch, no more.
        got = assert_resends_identical(vm.points('{__name__="coater_speed"}'), at_most=CHILD_BATCH)
        # 0.1 s apart: no two samples share a millisecond, so each key is one sample.
        assert sorted((ts, v) for (_, ts), v in got.items()) == \
            [(int(round((t0 + i / 10) * 1e9)) // 1_000_000, float(i)) for i in range(n)]
    finally:
        await store.close()
