"""The forwarding service's status: what makes a sink a problem for /health, named."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.forward.config import ForwardConfig
from gateway.forward.service import Forwarding
from gateway.samples import Quality, Sample
from gateway.store.sqlite import SqliteStore


def _samples(n: int, gateway_ts: float) -> list[Sample]:
    return [Sample("c1", "web.speed", float(i), "m/min", gateway_ts + i, gateway_ts + i, Quality.GOOD)
            for i in range(n)]


async def test_a_sink_far_behind_and_samples_the_store_dropped_are_problems(tmp_path: Path) -> None:
    # The writer lingers (long commit interval, big batch), so the queue stays full until flush().
    store = SqliteStore(tmp_path / "g.db", max_queue=10, batch_rows=1000, commit_interval_s=3600)
    await store.start()
    try:
        cfg = ForwardConfig.model_validate({"influx": {"url": "http://127.0.0.1:9", "max_lag_s": 60},
                                            "mqtt": {"port": 9}})
        forwarding = Forwarding(store, cfg, "L1", {"c1": "coater"})
        await store.write_samples_async(_samples(5, time.time() - 120))  # recorded two minutes ago, not sent
        await store.flush()
        status = await forwarding.status()
        assert status["influx"]["backlog"] == status["mqtt"]["backlog"] == 5
        (behind,) = status["influx"]["problems"]  # past its max_lag_s of 60 s
        assert behind.startswith("influx: 5 samples waiting, the oldest 12") and "(max_lag_s 60)" in behind
        assert status["mqtt"]["problems"] == []  # within the default max_lag_s of 300 s

        store.write_samples(_samples(10, time.time()))
        store.write_samples(_samples(3, time.time()))  # the queue holds 10: these three are dropped
        await store.flush()
        status = await forwarding.status()
        assert status["influx"]["not_stored"] == status["mqtt"]["not_stored"] == 3
        assert status["mqtt"]["problems"] == ["mqtt: 3 samples never reached the store (its queue was full)"]
        assert status["influx"]["problems"][1:] == ["influx: 3 samples never reached the store (its queue was full)"]
    finally:
        await store.close()
