"""The gateway under equipment faults: it keeps serving the others and recovers by itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from gateway.config import LineConfig
from gateway.runtime.device import STALLED
from gateway.runtime.line import LineRuntime
from gateway.samples import Quality
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from simulators.line import SimConfig, SimLine
from tests.waiting import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

MACHINES = [
    ("coater1", "coater", "opcua", {"dryer_zone": 2, "lane": 2}),
    ("winder1", "winder", "modbus", {}),
    ("form1", "formation", "modbus", {"channel": 4}),
]
# A value of each machine that changes all the time: how a test sees that the machine is still served.
CHANGING = {"coater1": "status.heartbeat", "winder1": "status.heartbeat", "form1": "channel[1].voltage"}

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
    """The value was read after `after`, the machine produced it after `after` too, and it is good."""
    s = runtime.devices[eq].latest.get(path)
    return s is not None and s.gateway_ts > after and s.source_ts > after and s.quality == Quality.GOOD


async def others_still_served(runtime: LineRuntime, faulty: str) -> None:
    """Every other machine of the line delivers fresh good values (called while `faulty` is faulty)."""
    t0 = time.time()
    for eq, path in CHANGING.items():
        if eq != faulty:
            await wait_for(lambda eq=eq, path=path: fresh(runtime, eq, path, t0) and runtime.get(eq).available,
                           f"{eq} still served while {faulty} is faulty")


@contextlib.asynccontextmanager
async def opcua_server_gone(sims: SimLine, eq: str, shift_namespace: bool) -> AsyncIterator[None]:
    """The machine's OPC UA server is gone until the block ends; it comes back, with its namespace
    registered one index further when `shift_namespace` (as after a firmware update)."""
    sim = sims.simulators[eq]
    server = sim.binding.server
    await server.stop()
    try:
        yield
    finally:
        await server.start(extra_namespaces=1 if shift_namespace else 0)
        await sim.publish_all()


@contextlib.asynccontextmanager
async def dropped_off(sims: SimLine, eq: str) -> AsyncIterator[None]:
    """The machine is off the network until the block ends: Modbus refuses connections, OPC UA's server is gone."""
    faults = sims.simulators[eq].faults
    if sims.simulators[eq].binding.protocol == "opcua":
        async with opcua_server_gone(sims, eq, shift_namespace=False):
            yield
        return
    faults.refuse(True)
    faults.drop_connections()
    try:
        yield
    finally:
        faults.refuse(False)


async def test_modbus_exceptions_mark_only_the_points_they_touch(line):
    runtime, sims = line
    span = sims.simulators["winder1"].faults.exception("tension.cathode", "illegal_address")
    try:
        bad = await wait_for(lambda: (s := runtime.devices["winder1"].latest.get("tension.cathode"))
                             and s.quality == Quality.BAD and s, "tension.cathode marked bad")
        assert "exception" in bad.reason and bad.value is None
        t0 = time.time()
        # Points read in other requests (the common block is far from the class block) stay good.
        await wait_for(lambda: fresh(runtime, "winder1", "status.heartbeat", t0), "other winder values still good")
        assert runtime.get("winder1").available
        await others_still_served(runtime, "winder1")
        assert runtime.devices["winder1"].latest["tension.cathode"].quality == Quality.BAD  # still faulty
    finally:
        del sims.simulators["winder1"].binding.server.faults.exception_addresses[span]  # the device heals
    t1 = time.time()
    await wait_for(lambda: fresh(runtime, "winder1", "tension.cathode", t1),
                   "tension.cathode good again once the device stops answering with exceptions")


async def test_an_address_exception_on_the_heartbeat_spoils_the_heartbeat_only(line):
    """Exception 2 on two registers of a merged block: the block is split, the rest of it stays good."""
    runtime, sims = line
    dev = runtime.devices["winder1"]
    span = sims.simulators["winder1"].faults.exception("status.heartbeat", "illegal_address")
    assert len(span) == 2
    try:
        bad = await wait_for(lambda: (s := dev.latest.get("status.heartbeat")) and s.quality == Quality.BAD
                             and s, "status.heartbeat marked bad")
        assert bad.reason == "modbus exception 2 (illegal data address)" and bad.value is None
        t0 = time.time()
        # A whole scan after the split (well within the heartbeat timeout: the machine is still judged alive).
        await wait_for(lambda: all(s.gateway_ts > t0 for p, s in dev.latest.items()
                                   if p != "status.availability" and s.reason != "from_mapping"), "a fresh scan")
        fresh_scan = {p: s for p, s in dev.latest.items() if s.gateway_ts > t0}
        not_good = {p: s.reason for p, s in fresh_scan.items() if s.quality != Quality.GOOD}
        assert not_good == {"status.heartbeat": "modbus exception 2 (illegal data address)"}
        assert len(fresh_scan) > 30  # the whole machine, not a corner of it
        assert dev.adapter.health().extra["unreadable_points"] == 1
    finally:
        del sims.simulators["winder1"].binding.server.faults.exception_addresses[span]
    t1 = time.time()
    await wait_for(lambda: fresh(runtime, "winder1", "status.heartbeat", t1), "the heartbeat read again")
    await wait_for(lambda: runtime.get("winder1").available, "winder1 available")
    assert dev.adapter.health().extra["unreadable_points"] == 0


@pytest.mark.parametrize("code", ["device_busy", "gateway_target_failed"])
async def test_a_modbus_machine_refusing_every_read_is_unavailable_with_the_reason(line, code, caplog):
    runtime, sims = line
    caplog.set_level(logging.INFO, logger="linegw")
    faults = sims.simulators["winder1"].faults
    t0 = time.time()
    span = faults.exception("*", code)
    try:
        await wait_for(lambda: not runtime.get("winder1").available, "winder1 unavailable")
        reason = runtime.get("winder1").link_reason
        number = 6 if code == "device_busy" else 11
        assert reason.startswith("every read refused") and f"(exception {number})" in reason
        assert runtime.devices["winder1"].latest["status.heartbeat"].reason == "link_down"
        await others_still_served(runtime, "winder1")
        assert not runtime.get("winder1").available  # for as long as it refuses
    finally:
        del sims.simulators["winder1"].binding.server.faults.exception_addresses[span]
    await wait_for(lambda: runtime.get("winder1").available, "winder1 available once it answers")
    t1 = time.time()
    await wait_for(lambda: fresh(runtime, "winder1", "status.heartbeat", t1), "winder1 values flowing again")
    gaps = await runtime.store.link_history("winder1", t0 - 1, time.time())
    assert gaps and gaps[-1]["down_ts"] >= t0 and gaps[-1]["up_ts"] is not None
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("winder1:")]
    assert [m for m in lines if "UNAVAILABLE" in m] == [f"winder1: UNAVAILABLE {reason}"]  # once as it starts
    assert [m for m in lines if "available" in m and "UNAVAILABLE" not in m] == ["winder1: available "]  # once as it ends


@pytest.mark.parametrize("eq", ["winder1", "coater1"])
async def test_a_device_dropping_off_does_not_stop_the_others_and_comes_back(line, eq):
    runtime, sims = line
    t0 = time.time()
    async with dropped_off(sims, eq):
        await wait_for(lambda: not runtime.get(eq).available, f"{eq} unavailable")
        assert runtime.devices[eq].latest[CHANGING[eq]].reason == "link_down"  # the gap is visible
        await others_still_served(runtime, eq)
        assert not runtime.get(eq).available  # the others were served while this one was gone
    await wait_for(lambda: runtime.get(eq).available, f"{eq} back by itself")
    t1 = time.time()
    await wait_for(lambda: fresh(runtime, eq, CHANGING[eq], t1), f"{eq} values flowing again")
    gaps = await runtime.store.link_history(eq, t0 - 1, time.time())
    assert gaps and gaps[-1]["down_ts"] >= t0 and gaps[-1]["up_ts"] is not None


async def test_opcua_restart_with_new_namespace_indexes_is_survived(line):
    runtime, sims = line
    server = sims.simulators["coater1"].binding.server
    ns, reconnects = server.ns, runtime.devices["coater1"].adapter.health().reconnects
    async with opcua_server_gone(sims, "coater1", shift_namespace=True):
        await wait_for(lambda: not runtime.get("coater1").available, "coater1 unavailable while its server is gone")
        await others_still_served(runtime, "coater1")
        t0 = time.time()  # the restarted server serves every value anew, after this
    assert server.ns == ns + 1  # the restarted server really moved the machine's namespace
    await wait_for(lambda: runtime.devices["coater1"].adapter.health().reconnects > reconnects, "a reconnect")
    for path in ("status.heartbeat", "web.line_speed"):  # read through the new namespace index
        await wait_for(lambda path=path: fresh(runtime, "coater1", path, t0), f"coater1 {path} after the restart")
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
    dev = runtime.devices["form1"]
    faults = sims.simulators["form1"].faults
    faults.freeze()  # every value, the heartbeat too: connected but no data
    try:
        await wait_for(lambda: not runtime.get("form1").available, "form1 unavailable", timeout=30)
        assert runtime.get("form1").link_reason.startswith("heartbeat_stopped")
        t0 = time.time()
        # Every scan reads the frozen values again: they are recorded as the same values, not as fresh good ones.
        reread = await wait_for(lambda: (s := dev.latest.get("channel[1].voltage")) and s.gateway_ts > t0 and s,
                                "a value re-read from the frozen machine")
        assert (reread.quality, reread.reason) == (Quality.UNCERTAIN, STALLED) and reread.value is not None
        assert all(s.quality != Quality.GOOD for p, s in dev.latest.items() if p != "status.availability")
        await others_still_served(runtime, "form1")
    finally:
        thawed = time.time()
        faults.unfreeze()
    await wait_for(lambda: runtime.get("form1").available, "form1 available again", timeout=30)
    t1 = time.time()
    await wait_for(lambda: fresh(runtime, "form1", "channel[1].voltage", t1), "good values once the heartbeat moves")
    await runtime.store.flush()
    history = await runtime.store.history("form1", "channel[1].voltage", t0, thawed)
    assert history and all((r["quality"], r["reason"]) == (int(Quality.UNCERTAIN), STALLED) for r in history)


async def test_a_frozen_opcua_machine_shows_its_last_values_uncertain_until_its_heartbeat_moves(line):
    """OPC UA sends nothing for an unchanged value: the values it last sent are marked, then restored.
    A machine that changes nothing is quiet, not a silent subscription: the session is kept."""
    runtime, sims = line
    dev = runtime.devices["coater1"]
    faults = sims.simulators["coater1"].faults
    adapter = dev.adapter
    sessions, checks = adapter.health().reconnects, adapter.health().extra["silence_checks"]
    faults.freeze()
    try:
        await wait_for(lambda: not runtime.get("coater1").available, "coater1 unavailable", timeout=30)
        for path in ("web.line_speed", "identification.manufacturer"):
            s = dev.latest[path]
            assert (s.quality, s.reason) == (Quality.UNCERTAIN, STALLED) and s.value is not None, path
        await others_still_served(runtime, "coater1")
        await wait_for(lambda: adapter.health().extra["silence_checks"] > checks, "a check of the quiet subscription",
                       timeout=30)
        assert adapter.health().reconnects == sessions and adapter.health().extra["silent_subscriptions"] == 0
    finally:
        faults.unfreeze()
    await wait_for(lambda: runtime.get("coater1").available, "coater1 available again", timeout=30)
    t1 = time.time()
    await wait_for(lambda: fresh(runtime, "coater1", "status.heartbeat", t1), "the heartbeat moving, good")
    # A value the machine did not change since is good again, with the time the machine gave it.
    await wait_for(lambda: dev.latest["identification.manufacturer"].quality == Quality.GOOD, "identity good again")
    assert dev.latest["identification.manufacturer"].source_ts < t1


async def test_an_opcua_subscription_gone_silent_is_subscribed_anew(line, caplog):
    """Keep-alives come, data changes do not, while the machine's values move (a server's stalled
    subscription): the gateway sees it by a Read and subscribes anew, with the fault still on."""
    runtime, sims = line
    adapter = runtime.devices["coater1"].adapter
    sessions = adapter.health().reconnects
    faults = sims.simulators["coater1"].faults
    faults.silence()  # the subscription the gateway has now; a new one works
    try:
        await wait_for(lambda: adapter.health().reconnects > sessions, "a new session", timeout=30)
        assert adapter.health().extra["silent_subscriptions"] == 1
        t1 = time.time()
        await wait_for(lambda: fresh(runtime, "coater1", "status.heartbeat", t1), "data on the new subscription")
    finally:
        faults.silence(False)
    said = [r.getMessage() for r in caplog.records if "silent" in r.getMessage()]
    assert said and "changed on the server and was not notified" in said[0], said
