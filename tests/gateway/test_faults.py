"""The gateway under equipment faults: it keeps serving the others and recovers by itself."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import pytest
import pytest_asyncio

from gateway.config import LineConfig
from gateway.runtime.line import LineRuntime
from gateway.samples import Quality
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from tests.waiting import wait_for
from simulators.line import SimConfig, SimLine

pytestmark = pytest.mark.asyncio(loop_scope="module")

MACHINES = [
    ("coater1", "coater", "opcua", {"dryer_zone": 2, "lane": 2}),
    ("winder1", "winder", "modbus", {}),
    ("form1", "formation", "modbus", {"channel": 4}),
]



@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def line(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    sims = SimLine()
    await sims.start([SimConfig(equipment_id=i, cls=c, protocol=p, port=0, seed=5, time_scale=10, counts=n)
                      for i, c, p, n in MACHINES])
    urls = sims.endpoints()
    cfg = LineConfig.model_validate({
        "line": "faults",
        "equipment": [{"id": i, "class": c, "protocol": p, "endpoint": urls[i], "counts": n,
                       "adapter": {"scan_interval_ms": 200, "timeout_s": 0.5, "backoff_max_s": 1.0}}
                      for i, c, p, n in MACHINES],
    })
    store = SqliteStore(tmp / "store.sqlite")
    await store.start()
    runtime = LineRuntime(cfg, load_spec(), store)
    task = asyncio.create_task(runtime.run())
    try:
        await wait_for(lambda: all(e.available and e.state.get("packml_state") for e in runtime.equipment()),
                       "every machine available")
        yield runtime, sims
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
        await sims.stop()


def fresh(runtime: LineRuntime, eq: str, path: str, after: float) -> bool:
    s = runtime.devices[eq].latest.get(path)
    return s is not None and s.gateway_ts > after and s.quality == Quality.GOOD


async def test_modbus_exceptions_mark_only_the_points_they_touch(line):
    runtime, sims = line
    span = sims.simulators["winder1"].faults.exception("tension.cathode", "illegal_address")
    bad = await wait_for(lambda: (s := runtime.devices["winder1"].latest.get("tension.cathode"))
                         and s.quality == Quality.BAD and s, "tension.cathode marked bad")
    assert "exception" in bad.reason and bad.value is None
    t0 = time.time()
    # Points read in other requests (the common block is far from the class block) stay good.
    await wait_for(lambda: fresh(runtime, "winder1", "status.heartbeat", t0), "other winder values still good")
    assert runtime.get("winder1").available
    del sims.simulators["winder1"].binding.server.faults.exception_addresses[span]  # the device heals
    t1 = time.time()
    await wait_for(lambda: fresh(runtime, "winder1", "tension.cathode", t1),
                   "tension.cathode good again once the device stops answering with exceptions")


async def test_a_device_dropping_off_does_not_stop_the_others_and_comes_back(line):
    runtime, sims = line
    faults = sims.simulators["winder1"].faults
    faults.refuse(True)
    faults.drop_connections()
    await wait_for(lambda: not runtime.get("winder1").available, "winder1 unavailable")
    assert runtime.devices["winder1"].latest["tension.cathode"].reason == "link_down"  # the gap is visible
    t0 = time.time()
    await wait_for(lambda: fresh(runtime, "form1", "channel[1].voltage", t0), "the formation rack still served")
    await wait_for(lambda: fresh(runtime, "coater1", "status.heartbeat", t0), "the coater still served")
    faults.refuse(False)
    await wait_for(lambda: runtime.get("winder1").available, "winder1 back by itself")
    t1 = time.time()
    await wait_for(lambda: fresh(runtime, "winder1", "tension.cathode", t1), "winder1 values flowing again")
    gaps = await runtime.store.link_history("winder1", t0 - 60, time.time())
    assert gaps and gaps[-1]["up_ts"] is not None


async def test_opcua_restart_with_new_namespace_indexes_is_survived(line):
    runtime, sims = line
    restarts = runtime.devices["coater1"].adapter.health().reconnects
    await sims.simulators["coater1"].faults.restart(shift_namespace=True, downtime_s=1.0)
    await wait_for(lambda: runtime.devices["coater1"].adapter.health().reconnects > restarts, "a reconnect")
    t0 = time.time()
    await wait_for(lambda: fresh(runtime, "coater1", "status.heartbeat", t0), "coater values after the restart")
    assert runtime.get("coater1").available


async def test_nan_and_out_of_range_values_are_flagged_not_dropped(line):
    runtime, sims = line
    faults = sims.simulators["form1"].faults
    faults.nan("rack.temperature")
    s = await wait_for(lambda: (x := runtime.devices["form1"].latest.get("rack.temperature"))
                       and x.reason == "nan" and x, "NaN flagged")
    assert (s.quality, s.value) == (Quality.BAD, None)
    faults.restore("rack.temperature")
    faults.out_of_range("rack.temperature")
    s = await wait_for(lambda: (x := runtime.devices["form1"].latest.get("rack.temperature"))
                       and x.reason == "out_of_range" and x, "out of range flagged")
    assert s.quality == Quality.UNCERTAIN and s.value is not None
    faults.restore("rack.temperature")
    await wait_for(lambda: runtime.devices["form1"].latest["rack.temperature"].quality == Quality.GOOD, "good again")


async def test_frozen_machine_becomes_unavailable_by_its_heartbeat(line):
    runtime, sims = line
    faults = sims.simulators["form1"].faults
    faults.freeze()  # every value, the heartbeat too: connected but no data
    await wait_for(lambda: not runtime.get("form1").available, "form1 unavailable", timeout=30)
    assert runtime.get("form1").link_reason.startswith("heartbeat_stopped")
    faults.unfreeze()
    await wait_for(lambda: runtime.get("form1").available, "form1 available again", timeout=30)
