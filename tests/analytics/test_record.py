"""A cell's manufacturing record and the recall query, on a scripted line in a real SqliteStore.

The script: coater1 coats cathode roll EC-1 (foil FOIL-1, slurry SL-1) and anode
roll EA-1; winder1 winds JR-1, JR-2 and JR-3 from them, one after the other,
each with its own level of cathode tension; formation1 forms JR-1 and JR-2 as
CL-1 on channel 1 and CL-2 on channel 2, each channel with its own voltage
curve. JR-3 is not formed yet.
"""

from __future__ import annotations

import httpx
import pytest

from gateway.analytics.record import RecordBuilder, process_variables
from gateway.api.app import create_app
from gateway.runtime.device import event_ids
from gateway.samples import Quality, Sample
from gateway.store import SqliteStore
from tests.analytics.script import SPEC, alarm
from tests.analytics.test_oee_api import line_file
from tests.store.stores import SealingStore

T0 = 1_700_100_000.25
MACHINES = {"coater1": "coater", "winder1": "winder", "formation1": "formation"}
JR_END = {"JR-1": T0 + 700, "JR-2": T0 + 760, "JR-3": T0 + 820}  # 60 s per jelly roll after a start at 640
TENSION = {"JR-1": 10.0, "JR-2": 20.0, "JR-3": 30.0}
FORM_START, FORM_END = T0 + 900, T0 + 1500


class Script:
    def __init__(self, store):
        self.store, self.seq, self.samples = store, 0, []

    async def event(self, eq: str, kind: str, ts: float, payload: dict) -> None:
        self.seq += 1
        await self.store.record_event(eq, kind, ts, self.seq, payload, ids=event_ids(payload))

    def series(self, eq: str, path: str, t0: float, t1: float, step: float, value) -> None:
        t = t0
        while t < t1:
            self.samples.append(Sample(eq, path, value(t), "", t, t, Quality.GOOD, ""))
            t += step


async def build(store) -> None:
    s = Script(store)
    # coater: one roll after the other, 0-300 s and 300-600 s; a dryer alarm while EC-1 is coated.
    await s.event("coater1", "JobStarted", T0, {"job_id": "J-C"})
    s.series("coater1", "web.line_speed", T0, T0 + 600, 0.5, lambda t: 30.0 if t <= T0 + 300 else 40.0)
    s.series("coater1", "lane[1].areal_weight", T0, T0 + 600, 0.5, lambda t: 18.0 if t <= T0 + 300 else 9.0)
    s.series("coater1", "dryer_zone[2].air_temperature", T0, T0 + 600, 1.0, lambda t: 110.0)
    await alarm(store, "coater1", 1002, T0 + 100, T0 + 120, stop_reason=True)
    for roll, foil, end in (("EC-1", "FOIL-1", T0 + 300), ("EA-1", "FOIL-2", T0 + 600)):
        await s.event("coater1", "UnitProcessed", end, {"unit_type": "electrode_roll", "unit_id": roll, "result": "good",
                                                        "made_from": [foil, "SL-1"], "measurements": {"length": 200.0}})
    # winder: each jelly roll's tension is its own level, with a wobble, sampled every 250 ms.
    await s.event("winder1", "JobStarted", T0 + 640, {"job_id": "J-W"})
    for jr, end in JR_END.items():
        s.series("winder1", "tension.cathode", end - 60 + 0.25, end + 0.25, 0.25,
                 lambda t, jr=jr: TENSION[jr] + (t % 1.0))
        s.series("winder1", "edge_control.cathode_deviation", end - 60 + 0.5, end + 0.5, 0.5, lambda t: 0.1)
        await s.event("winder1", "UnitProcessed", end, {
            "unit_type": "jelly_roll", "unit_id": jr, "result": "good", "made_from": ["EC-1", "EA-1", "SEP-1"],
            "measurements": {"diameter": 21.0}})
    await s.event("winder1", "StateChanged", JR_END["JR-2"] - 30,
                  {"variable": "packml_state", "previous": "Execute", "current": "Suspended"})
    # formation: a tray of two cells loaded at 900 s, graded at 1500 s.
    for ch, (jr, cell) in enumerate((("JR-1", "CL-1"), ("JR-2", "CL-2")), start=1):
        await s.event("formation1", "MaterialConsumed", FORM_START, {"material_type": "jelly_roll", "material_id": jr})
        s.series("formation1", f"channel[{ch}].cell_id", FORM_START, FORM_END + 30, 1.0, lambda t, c=cell: c)
        s.series("formation1", f"channel[{ch}].voltage", FORM_START, FORM_END + 30, 1.0,
                 lambda t, ch=ch: 3.0 + ch * 0.1 + (t - FORM_START) / 6000)
        await s.event("formation1", "UnitProcessed", FORM_END, {
            "unit_type": "cell", "unit_id": cell, "result": "good" if ch == 1 else "reject",
            "made_from": [jr], "measurements": {"ocv": 3.6, "dcir": 12.0 + ch}})
    await store.write_samples_async(s.samples)
    await store.flush()


@pytest.fixture(params=["head", "sealed"])
async def store(tmp_path, request):
    async with (SqliteStore if request.param == "head" else SealingStore)(tmp_path / "line.sqlite") as s:
        await build(s)
        assert request.param == "head" or s.stats()["sealed_samples"] > 0
        yield s


async def test_a_cells_record_holds_its_own_jelly_rolls_window_not_its_neighbours(store):
    record = await RecordBuilder(store, SPEC, MACHINES).record("CL-2")
    stages = {st["unit_id"]: st for st in record["stages"]}
    assert list(stages) == ["CL-2", "JR-2", "EC-1", "EA-1"]
    jr = stages["JR-2"]
    assert (jr["window"]["start"], jr["window"]["end"]) == (JR_END["JR-1"], JR_END["JR-2"])
    tension = jr["process_values"]["tension.cathode"]
    raw = await store.history("winder1", "tension.cathode", JR_END["JR-1"] + 1e-6, JR_END["JR-2"] + 1e-6)
    assert tension["points"] == [[r["ts"], r["value"]] for r in raw] and len(raw) == 240
    assert 20.0 <= tension["min"] and tension["max"] < 21.0  # JR-2's level only: JR-1 is 10.x, JR-3 30.x
    assert tension["mean"] == pytest.approx(sum(r["value"] for r in raw) / len(raw))
    assert [c["current"] for c in jr["state_changes"]] == ["Suspended"]


async def test_the_electrode_roll_stage_and_the_formation_channel_are_the_units_own(store):
    record = await RecordBuilder(store, SPEC, MACHINES).record("CL-2")
    stages = {st["unit_id"]: st for st in record["stages"]}
    ec = stages["EC-1"]
    assert (ec["window"]["start"], ec["window"]["end"]) == (T0, T0 + 300)
    assert ec["process_values"]["lane[1].areal_weight"]["max"] == 18.0  # EA-1's 9.0 is not in it
    assert [a["code"] for a in ec["alarms"]] == [1002]
    assert stages["EA-1"]["process_values"]["lane[1].areal_weight"]["min"] == 9.0
    assert stages["EA-1"]["alarms"] == []
    cell = stages["CL-2"]
    assert cell["window"]["channel"] == 2 and cell["result"] == "reject"
    assert list(cell["process_values"]) == ["channel[2].voltage"]
    raw = await store.history("formation1", "channel[2].voltage", FORM_START + 1e-6, FORM_END + 1e-6)
    assert cell["process_values"]["channel[2].voltage"]["points"] == [[r["ts"], r["value"]] for r in raw]


async def test_recall_from_an_electrode_roll_and_a_lot_finds_every_cell(store):
    builder = RecordBuilder(store, SPEC, MACHINES)
    for lot in ("EC-1", "SEP-1", "FOIL-1"):
        r = await builder.recall(lot)
        assert sorted(c["unit_id"] for c in r["cells"]) == ["CL-1", "CL-2"], lot
        assert r["cells_by_result"] == {"good": 1, "reject": 1}
        assert [u["unit_id"] for u in r["not_yet_cells"]] == ["JR-3"]
    assert await builder.recall("NOTHING") is None


async def test_many_points_come_as_bucket_averages_with_the_summary_over_all(store):
    record = await RecordBuilder(store, SPEC, MACHINES, max_points=20).record("JR-2")
    tension = record["stages"][0]["process_values"]["tension.cathode"]
    assert tension["n"] == 240 and len(tension["points"]) <= 21 and tension["points_bucket_s"] == 3.0


def test_process_variables_are_the_measured_values_of_the_class():
    winder = process_variables(SPEC, "winder")
    assert "tension.cathode" in winder and "edge_control.anode_deviation" in winder
    assert "tension.setpoint" not in winder and "jelly_roll.diameter" not in winder  # a setpoint, a result
    assert "lane[].areal_weight" in process_variables(SPEC, "coater")


async def test_routes_serve_the_record_and_the_recall_and_404_what_is_unknown(tmp_path):
    from gateway.config import load_line
    from gateway.runtime.line import LineRuntime

    cfg = load_line(line_file(tmp_path))
    async with SqliteStore(cfg.store.path) as store:
        await build(store)
        app = create_app(LineRuntime(cfg, SPEC, store), store, SPEC, cfg.api)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            r = await c.get("/api/v1/record/CL-1")
            assert r.status_code == 200, r.text
            assert [s["unit_id"] for s in r.json()["stages"]] == ["CL-1", "JR-1", "EC-1", "EA-1"]
            r = await c.get("/api/v1/recall/EC-1")
            assert r.status_code == 200 and r.json()["cell_count"] == 2
            for url in ("/api/v1/record/CL-9", "/api/v1/recall/LOT-9"):
                r = await c.get(url)
                assert r.status_code == 404 and "no event mentions" in r.json()["detail"]
            r = await c.get("/api/v1/record/CL-1", params={"max_points": 0})
            assert r.status_code == 422
