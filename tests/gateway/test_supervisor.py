"""The line supervisor: a machine's task that fails is restarted with the gateway's one backoff."""

from __future__ import annotations

import asyncio
import logging
import re

from gateway.config import LineConfig
from gateway.runtime.line import LineRuntime
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from tests.waiting import wait_for


async def test_a_failing_machine_task_is_restarted_with_growing_jittered_delays(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="linegw.runtime")
    gone = tmp_path / "gone.yaml"  # the mapping file is removed under a configured line: every start fails
    cfg = LineConfig.model_validate({
        "line": "supervised",
        "equipment": [{"id": "winder9", "class": "winder", "protocol": "modbus", "endpoint": "127.0.0.1:1",
                       "mapping": str(gone)}],
    })
    store = SqliteStore(tmp_path / "store.sqlite")
    await store.start()
    runtime = LineRuntime(cfg, load_spec(), store)
    task = asyncio.create_task(runtime.run())
    try:
        await wait_for(lambda: runtime.restarts["winder9"] >= 3, "three restarts", timeout=30)
        view = runtime.get("winder9")
        assert not view.available and view.link_reason.startswith("supervisor restart:")
        assert "gone.yaml" in view.link_reason
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
    delays = [float(m.group(1)) for r in caplog.records
              if (m := re.search(r"winder9: device task failed; restarting in ([0-9.]+) s", r.getMessage()))]
    assert len(delays) >= 3
    for n, d in enumerate(delays[:3]):
        nominal = 2.0 ** n  # 1, 2, 4 s, each shortened by up to half so machines do not restart in step
        assert nominal / 2 <= d <= nominal, (n, d)
    # Jittered: three machines failing together do not all come back 1, 2 and 4 s later (a chance below 1e-6).
    assert delays[:3] != [1.0, 2.0, 4.0]
