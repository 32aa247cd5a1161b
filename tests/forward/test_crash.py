"""A forwarder SIGKILLed mid-stream; a new one resumes from the persisted cursor: no gaps, no duplicates."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gateway.forward.config import InfluxForward
from gateway.forward.influx import InfluxForwarder
from gateway.samples import Quality, Sample
from gateway.store.sqlite import SqliteStore
from tests.forward.conftest import VictoriaMetrics

CHILD = """
import asyncio, sys
from gateway.forward.config import InfluxForward
from gateway.forward.influx import InfluxForwarder
from gateway.store.sqlite import SqliteStore
async def main():
    store = SqliteStore(sys.argv[1]); await store.start()
    await InfluxForwarder(store, InfluxForward(url=sys.argv[2], batch_size=20, poll_s=0.05), "L1", {"c1": "coater"}).run()
asyncio.run(main())
"""


async def test_sigkill_then_resume(tmp_path: Path, vm: VictoriaMetrics) -> None:
    n = 2000
    t0 = float(int(time.time()) - 3600)
    db = tmp_path / "g.db"
    store = SqliteStore(db)
    await store.start()
    await store.write_samples_async([Sample("c1", "web.speed", float(i), "m/min", t0 + i / 10, t0, Quality.GOOD)
                                     for i in range(n)])
    await store.close()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), vm.url], cwd=Path(__file__).parents[2])
    try:
        while vm.count('{__name__="coater_speed"}') < 200:
            await asyncio.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    store = SqliteStore(db)
    await store.start()
    try:
        fwd = InfluxForwarder(store, InfluxForward(url=vm.url, batch_size=20, poll_s=0.05), "L1", {"c1": "coater"})
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(fwd.run())
            while (await store.read_since(fwd.stats()["cursor"] or (await store.get_cursor("influx") or 0), 1))[0]:
                await asyncio.sleep(0.05)
            task.cancel()
        series = await vm.searchable('{__name__="coater_speed"}', n)
        values = sorted(float(v) for s in series for v in s["values"])
        assert (len(values), len(set(values))) == (n, n) and values == [float(i) for i in range(n)]
    finally:
        await store.close()
