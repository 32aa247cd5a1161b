"""The demo line end to end: the shipped line file, its simulators, the gateway, the API.

Runs `deploy/lines/demo.yaml` as `make demo` does (ports made free, time
sped up) and checks through the REST API what an engineer would look at.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import pytest_asyncio

from gateway.api.app import create_app
from gateway.cli import DEMO_LINE, start_simulators
from gateway.config import load_line
from gateway.runtime.line import LineRuntime
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from tests.waiting import wait_for

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

# Simulated seconds per wall second: a coater roll, jelly rolls and a formed tray within a minute.
# The winders speak vendor dialects: their jelly rolls are seen by reading, so no faster than it reads.
TIME_SCALE = {"coater": 120.0, "winder": 10.0, "formation": 3000.0}



@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def line(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    cfg = load_line(DEMO_LINE)
    cfg.store.path = str(tmp / "demo.sqlite")
    for eq in cfg.equipment:
        eq.endpoint = eq.endpoint.replace(f":{eq.endpoint.rsplit(':', 1)[1].split('/')[0]}", ":0", 1)
        eq.simulate.time_scale = TIME_SCALE[eq.cls]
        eq.command_timeout_s = 20
    sims = await start_simulators(cfg)
    store = SqliteStore(cfg.store.path)
    await store.start()
    runtime = LineRuntime(cfg, load_spec(), store)
    task = asyncio.create_task(runtime.run())
    app = create_app(runtime, store, runtime.spec, cfg.api)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=60) as client:
            await wait_for(lambda: all(e.available and e.state.get("packml_state") for e in runtime.equipment()),
                           "every machine available with a state")
            yield client, runtime, sims, cfg
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
        await sims.stop()


async def test_every_machine_is_present_with_identity_and_state(line):
    client, _, _, cfg = line
    r = await client.get("/api/v1/line")
    assert r.status_code == 200
    machines = {m["id"]: m for m in r.json()["machines"]}
    assert set(machines) == {eq.id for eq in cfg.equipment}
    for eq in cfg.equipment:
        detail = (await client.get(f"/api/v1/equipment/{eq.id}")).json()
        assert detail["class"] == eq.cls
        assert detail["identity"]["manufacturer"], f"{eq.id} has no manufacturer"
        assert detail["state"]["packml_state"] in load_spec().core.packml.states


async def test_values_carry_units_and_good_quality(line):
    client, *_ = line
    r = await client.get("/api/v1/equipment/coater1", params={"paths": "web.line_speed"})
    [value] = [v for v in r.json()["values"] if v["path"] == "web.line_speed"]
    assert value["unit"]["code"] == "m/min"
    assert value["quality"] == "good"
    r = await client.get("/api/v1/equipment/formation1", params={"paths": "channel[*].voltage"})
    voltages = [v for v in r.json()["values"] if v["path"].endswith(".voltage")]
    assert len(voltages) == 64  # the demo rack's 64 channels, discovered from the machine
    assert all(v["unit"]["code"] == "V" and v["quality"] == "good" for v in voltages)


# Values each winder's mapping converts: vendor units (m/min, cN, µm, ms) and scaled integers.
CONVERTED = ("winding.speed", "winding.cycle_time", "tension.cathode", "edge_control.cathode_deviation")


@pytest.mark.parametrize("eq", ["winder1", "winder2"])  # Tobu over Modbus, SZTP over OPC UA, both mapped
async def test_mapped_winders_show_spec_units_and_good_quality(line, eq):
    client, runtime, *_ = line
    spec = runtime.spec
    await wait_for(lambda: all(p in runtime.devices[eq].latest for p in CONVERTED), f"{eq} values")
    r = await client.get(f"/api/v1/equipment/{eq}", params={"paths": ",".join(CONVERTED)})
    values = {v["path"]: v for v in r.json()["values"]}
    assert set(values) == set(CONVERTED)
    for path, v in values.items():
        var = spec.variable("winder", path).var
        assert (v["unit"]["code"], v["quality"]) == (var.unit, "good"), (path, v)
        lo, hi = var.range
        assert lo <= v["value"] <= hi, (path, v)  # in the spec's unit, not the vendor's


async def test_history_is_downsampled_over_a_range(line):
    client, runtime, *_ = line
    start = time.time()
    await wait_for(lambda: runtime.devices["coater1"].latest.get("unwinder.tension"), "an unwind tension")

    async def history(**params) -> list[dict] | None:
        await runtime.store.flush()
        r = await client.get("/api/v1/equipment/coater1/history",
                             params={"path": "unwinder.tension", "start": f"{start}", **params})
        assert r.status_code == 200, r.text
        [series] = r.json()["series"]
        return series["points"]

    async def three_buckets():
        rows = await history(end=f"{time.time()}", bucket="2s", agg="avg,min,max,last")
        return rows if len(rows) >= 3 else None  # the first and last may be partial

    rows = await wait_for(three_buckets, "three two-second buckets of unwind tension", timeout=30)
    end = rows[-1]["ts"]
    rows = await history(end=f"{end}", bucket="2s", agg="avg,min,max,last")
    raw = await history(end=f"{end}")
    # Each bucket is what the raw samples in its two seconds make of it; sampled at 500 ms, fewer buckets than samples.
    for row in rows:
        inside = [p["value"] for p in raw if row["ts"] <= p["ts"] < row["ts"] + 2]
        assert inside, row
        assert (row["min"], row["max"], row["last"]) == (min(inside), max(inside), inside[-1])
        # Readings and the mean are shown to the spec's resolution (0.1 N), each within half a step of what was
        # stored: the mean shown and the mean of the readings shown differ by a step at most.
        assert row["avg"] == pytest.approx(sum(inside) / len(inside), abs=0.1 + 1e-9)
    assert len(raw) > len(rows)


async def test_an_alarm_raised_and_cleared_by_the_simulator_is_recorded(line):
    client, runtime, sims, _ = line
    machine = sims.simulators["winder1"].machine
    code = next(a.code for a in runtime.spec.alarms("winder") if a.id == "epc_limit")  # not a stop reason
    machine.raise_alarm(code)
    await wait_for(lambda: code in runtime.devices["winder1"].alarms.active, "the alarm to be seen")
    machine.clear_alarm(code)
    await wait_for(lambda: code not in runtime.devices["winder1"].alarms.active, "the alarm to clear")
    await runtime.store.flush()

    async def recorded():
        r = await client.get("/api/v1/alarms", params={"equipment": "winder1"})
        return [a for a in r.json() if a["code"] == code and a["cleared_ts"]]

    [alarm] = await wait_for(recorded, "the cleared occurrence in the store")
    assert alarm["raised_ts"] <= alarm["cleared_ts"]


async def test_a_cell_traces_back_to_its_electrode_rolls(line):
    """Cells of the first trays are made from placeholder inputs; one made on this line must appear."""
    client, _runtime, *_ = line

    def levels(node: dict, depth: int = 0) -> set[tuple[int, str]]:
        """(depth, unit type) of every unit in the tree that a machine of this line made."""
        out = set() if node.get("note") else {(depth, node.get("unit_type") or "")}
        for child in node.get("made_from", []):
            out |= levels(child, depth + 1)
        return out

    async def traced_cell():
        r = await client.get("/api/v1/events", params={"equipment": "formation1", "type": "UnitProcessed", "limit": 1000})
        for event in r.json():
            trace = await client.get(f"/api/v1/trace/{event['payload']['unit_id']}")
            assert trace.status_code == 200, trace.text
            if (2, "electrode_roll") in levels(trace.json()):
                return trace.json()
        return None

    tree = await wait_for(traced_cell, "a cell traced to electrode rolls", timeout=150)
    found = levels(tree)
    assert {(0, "cell"), (1, "jelly_roll"), (2, "electrode_roll")} <= found
    [jelly_roll] = tree["made_from"]
    assert jelly_roll["equipment"] in ("winder1", "winder2")
    made_here = [e for e in jelly_roll["made_from"] if e.get("unit_type") == "electrode_roll" and not e.get("note")]
    assert made_here and {e["equipment"] for e in made_here} == {"coater1"}


async def test_commands_accepted_in_remote_refused_in_local_or_wrong_state(line):
    client, runtime, sims, _ = line
    url = "/api/v1/equipment/coater1/commands"
    sent: list[dict] = []

    async def command(name: str, status: int) -> dict:
        r = await client.post(f"{url}/{name}", json={"params": {}})
        assert r.status_code == status, r.text
        sent.append(r.json())
        return r.json()

    await wait_for(lambda: runtime.get("coater1").state.get("packml_state") == "Execute", "coater running")
    assert "not allowed in state Execute" in (await command("Start", 409))["detail"]
    stopped = await command("Stop", 200)
    assert stopped["confirmed"] and stopped["state_after"] == "Stopped"

    sims.simulators["coater1"].machine.set_control_authority("Local")
    await wait_for(lambda: runtime.get("coater1").state.get("control_authority") == "Local", "Local authority seen")
    for name in ("Start", "Stop", "Reset"):  # whatever the command and the state: the panel has the machine
        refused = await command(name, 409)
        assert refused["result"] == "cannot_perform_now"
        assert refused["detail"] == "control authority is Local; commands need Remote", refused
    assert runtime.get("coater1").state["packml_state"] == "Stopped"  # none of them reached the machine

    sims.simulators["coater1"].machine.set_control_authority("Remote")
    await wait_for(lambda: runtime.get("coater1").state.get("control_authority") == "Remote", "Remote authority seen")
    assert (await command("Reset", 200))["state_after"] == "Idle"
    assert (await command("Start", 200))["state_after"] == "Execute"

    # Every request is in the audit log with its result, the refused ones with the reason given.
    audit = (await client.get("/api/v1/audit", params={"equipment": "coater1", "limit": len(sent)})).json()
    recorded = [(a["command"], a["result"], a["result_code"], a["detail"], a["user"]) for a in reversed(audit)]
    assert recorded == [(c["command"], c["result"], c["code"], c["detail"], "local") for c in sent]
    assert [a["result"] for a in reversed(audit)].count("cannot_perform_now") == 3
