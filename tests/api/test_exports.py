"""History of several paths and globs in one call, CSV exports, the alarm Pareto, made_into, late acknowledgement.

The gateway's real store is filled with known samples, alarms and events
(the runtime is built but not started: these routes read the store), so every
figure can be checked exactly.
"""

from __future__ import annotations

import csv
import io
import json
import time

import httpx
import pytest
import pytest_asyncio

from gateway.api.app import create_app
from gateway.api.present import Presenter
from gateway.config import LineConfig
from gateway.runtime.device import event_ids
from gateway.runtime.line import LineRuntime
from gateway.samples import Quality, Sample
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHANNELS = 12
T0 = (time.time() // 60 - 11) * 60  # ten minutes of data on whole minutes (buckets start on them), ending a minute ago
STEP = 10.0


def table(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exports")
    cfg = LineConfig.model_validate({"line": "exports", "store": {"path": str(tmp / "s.sqlite")}, "equipment": [
        {"id": "coater1", "class": "coater", "protocol": "opcua", "endpoint": "opc.tcp://127.0.0.1:1/c"},
        {"id": "winder1", "class": "winder", "protocol": "modbus", "endpoint": "modbus://127.0.0.1:1"},
        {"id": "form1", "class": "formation", "protocol": "modbus", "endpoint": "modbus://127.0.0.1:1",
         "counts": {"channel": CHANNELS}}]})
    store = SqliteStore(cfg.store.path)
    await store.start()
    try:
        samples = []
        for i in range(60):
            ts = T0 + i * STEP
            samples.append(Sample("coater1", "web.line_speed", 30.0 + i % 7, "m/min", ts, ts, Quality.GOOD))
            # A value as a scaled register gives it: 0.1 m/min per count, with the float's own error (32.300000000000004).
            samples.append(Sample("coater1", "web.line_speed_setpoint", 323 * 0.1, "m/min", ts, ts, Quality.GOOD))
            samples.append(Sample("coater1", "vendor.raw_speed", 323 * 0.1, "m/min", ts, ts, Quality.GOOD))
            for ch in range(1, CHANNELS + 1):
                samples.append(Sample("form1", f"channel[{ch}].voltage", 3.0 + ch / 100, "V", ts, ts, Quality.GOOD))
        store.write_samples(samples)
        alarms = [("form1", "a1", 3003, "Cell contact resistance high", 500, T0 + 10, T0 + 20),
                  ("form1", "a2", 3003, "Cell contact resistance high", 500, T0 + 30, T0 + 40),
                  ("form1", "a3", 3003, "Cell contact resistance high", 500, T0 + 50, None),
                  ("coater1", "a4", 3, "Compressed air pressure low", 600, T0 + 60, T0 + 70)]
        for eq, occ, code, text, sev, raised, cleared in alarms:
            await store.record_alarm(eq, occ, code, text, sev, "raised", raised, False, None)
            if cleared:
                await store.record_alarm(eq, occ, code, text, sev, "cleared", cleared, False, None)
        units = [("coater1", {"unit_id": "ER1", "unit_type": "electrode_roll", "result": "good",
                              "measurements": {"length": 200.0}}),
                 ("coater1", {"unit_id": "ER2", "unit_type": "electrode_roll", "result": "good"}),
                 ("winder1", {"unit_id": "JR1", "unit_type": "jelly_roll", "result": "good", "made_from": ["ER1", "ER2"]}),
                 ("form1", {"unit_id": "C1", "unit_type": "cell", "result": "good", "made_from": ["JR1"]}),
                 ("form1", {"unit_id": "C2", "unit_type": "cell", "result": "reject", "made_from": ["JR1"]})]
        units[3][1]["measurements"] = {"charge_capacity": 5.1, "dcir": 20.5}  # spec codes A.h and mOhm
        for seq, (eq, payload) in enumerate(units, 1):
            await store.record_event(eq, "UnitProcessed", T0 + seq, seq, payload, ids=event_ids(payload))
        await store.flush()
        runtime = LineRuntime(cfg, load_spec(), store)
        app = create_app(runtime, store, runtime.spec, cfg.api)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=30) as c:
            yield c
    finally:
        await store.close()


async def test_a_glob_gives_every_channel_in_numeric_order(client):
    r = await client.get("/api/v1/equipment/form1/history", params={"path": "channel[*].voltage", "start": "-1h"})
    assert r.status_code == 200, r.text
    paths = [s["path"] for s in r.json()["series"]]
    assert paths == [f"channel[{ch}].voltage" for ch in range(1, CHANNELS + 1)]  # channel[2] before channel[10]
    assert all(len(s["points"]) == 60 and s["unit"]["symbol"] == "V" for s in r.json()["series"])


async def test_globs_and_paths_mix_in_one_call(client):
    r = await client.get("/api/v1/equipment/form1/history",
                         params=[("path", "channel[1?].voltage,channel[3].voltage"), ("start", "-1h")])
    # In the order asked, each glob's matches in numeric order.
    assert [s["path"] for s in r.json()["series"]] == ["channel[10].voltage", "channel[11].voltage",
                                                       "channel[12].voltage", "channel[3].voltage"]
    r = await client.get("/api/v1/equipment/form1/history", params={"path": "channel[*].volts", "start": "-1h"})
    assert r.status_code == 404 and "matches no variable" in r.json()["detail"]


async def test_history_as_csv_matches_the_json(client):
    params = {"path": "web.line_speed", "start": "-1h"}
    points = (await client.get("/api/v1/equipment/coater1/history", params=params)).json()["series"][0]["points"]
    for r in (await client.get("/api/v1/equipment/coater1/history", params={**params, "format": "csv"}),
              await client.get("/api/v1/equipment/coater1/history", params=params, headers={"Accept": "text/csv"})):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert 'filename="coater1-history.csv"' in r.headers["content-disposition"]
        rows = table(r.text)
        assert list(rows[0]) == ["equipment", "path", "unit", "ts", "time", "value", "quality", "reason"]
        assert [float(x["value"]) for x in rows] == [p["value"] for p in points]
        assert {x["unit"] for x in rows} == {"m/min"} and {x["quality"] for x in rows} == {"good"}


async def test_floats_are_shown_to_the_resolution_the_spec_gives(client):
    assert 323 * 0.1 == 32.300000000000004  # what is stored
    params = {"path": "web.line_speed_setpoint", "start": "-1h"}
    raw = (await client.get("/api/v1/equipment/coater1/history", params=params)).json()["series"][0]["points"]
    assert {p["value"] for p in raw} == {32.3}  # resolution 0.1
    buckets = (await client.get("/api/v1/equipment/coater1/history",
                                params={**params, "bucket": "1min", "agg": "avg,min,max,last,twa,count"})).json()
    rows = buckets["series"][0]["points"]
    assert {(p["avg"], p["min"], p["max"], p["last"]) for p in rows} == {(32.3, 32.3, 32.3, 32.3)}
    assert {p["twa"] for p in rows if p["twa"] is not None} == {32.3} and sum(p["count"] for p in rows) == 60
    csv_rows = table((await client.get("/api/v1/equipment/coater1/history", params={**params, "format": "csv"})).text)
    assert {x["value"] for x in csv_rows} == {"32.3"}
    # Live values and the current picture go through the same presenter; a path the spec does not know has no
    # resolution, and its value is shown as stored.
    present = Presenter(load_spec())
    for path, shown in (("web.line_speed_setpoint", 32.3), ("vendor.raw_speed", 32.300000000000004)):
        assert present.sample("coater", Sample("coater1", path, 323 * 0.1, "m/min", T0, T0, Quality.GOOD))["value"] == shown
        assert present.live_row("coater", [path, 323 * 0.1, "m/min", 0, "", T0])["value"] == shown


async def test_bucketed_csv_with_a_spelled_out_bucket(client):
    r = await client.get("/api/v1/equipment/form1/history",
                         params={"path": "channel[*].voltage", "start": str(T0), "end": str(T0 + 600),
                                 "bucket": "1min", "agg": "avg,count", "format": "csv"})
    assert r.status_code == 200, r.text
    rows = table(r.text)
    assert list(rows[0]) == ["equipment", "path", "unit", "ts", "time", "avg", "count", "bad"]
    assert len(rows) == CHANNELS * 10 and all(int(x["count"]) == 6 for x in rows)
    assert float(rows[0]["avg"]) == pytest.approx(3.01)
    r = await client.get("/api/v1/equipment/form1/history", params={"path": "channel[1].voltage", "bucket": "1 parsec"})
    assert r.status_code == 422 and "10min" in r.json()["detail"]


async def test_an_unknown_format_is_refused(client):
    r = await client.get("/api/v1/events", params={"format": "xml"})
    assert r.status_code == 422 and "json or csv" in r.json()["detail"]


async def test_alarms_and_events_as_csv(client):
    rows = table((await client.get("/api/v1/alarms", params={"format": "csv"})).text)
    assert sorted(x["occurrence_id"] for x in rows) == ["a1", "a2", "a3", "a4"]
    a3 = next(x for x in rows if x["occurrence_id"] == "a3")
    assert (a3["active"], a3["id"], a3["cleared_time"]) == ("true", "contact_fault", "")
    rows = table((await client.get("/api/v1/events", params={"type": "UnitProcessed"},
                                   headers={"Accept": "text/csv"})).text)
    assert len(rows) == 5
    jr1 = next(x for x in rows if json.loads(x["payload"])["unit_id"] == "JR1")
    assert jr1["equipment"] == "winder1" and json.loads(jr1["payload"])["made_from"] == ["ER1", "ER2"]


async def test_pareto_counts_occurrences_per_code(client):
    r = await client.get("/api/v1/alarms/pareto", params={"start": "-1h"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 4
    assert [(c["equipment"], c["code"], c["count"]) for c in body["codes"]] == [("form1", 3003, 3), ("coater1", 3, 1)]
    assert body["codes"][0]["cumulative"] == 0.75 and body["codes"][-1]["cumulative"] == 1.0
    assert (await client.get("/api/v1/alarms/pareto", params={"start": "-1h", "equipment": "coater1"})).json()["total"] == 1


async def test_made_into_follows_a_roll_to_its_cells(client):
    r = await client.get("/api/v1/trace/ER1/made_into")
    assert r.status_code == 200, r.text
    tree = r.json()
    assert (tree["unit_id"], tree["equipment"], tree["measurements"]) == ("ER1", "coater1", {"length": 200.0})
    assert tree["measurement_units"] == {"length": "m"}
    [jelly_roll] = tree["made_into"]
    assert jelly_roll["unit_id"] == "JR1" and jelly_roll["equipment"] == "winder1"
    assert [(c["unit_id"], c["result"]) for c in jelly_roll["made_into"]] == [("C1", "good"), ("C2", "reject")]
    assert (await client.get("/api/v1/trace/NOPE/made_into")).status_code == 404


async def test_trace_units_are_spelled_as_everywhere_else(client):
    tree = (await client.get("/api/v1/trace/C1")).json()
    assert tree["measurement_units"] == {"charge_capacity": "Ah", "dcir": "mΩ"}  # symbols, as values show them


async def test_trace_as_csv_holds_both_directions(client):
    r = await client.get("/api/v1/trace/JR1", params={"format": "csv"})
    assert r.status_code == 200, r.text
    rows = [(x["direction"], x["depth"], x["unit_id"], x["parent"]) for x in table(r.text)]
    assert rows == [("self", "0", "JR1", ""), ("made_from", "1", "ER1", "JR1"), ("made_from", "1", "ER2", "JR1"),
                    ("made_into", "1", "C1", "JR1"), ("made_into", "1", "C2", "JR1")]


async def test_a_cleared_alarm_never_acknowledged_can_be_acknowledged_once(client):
    r = await client.post("/api/v1/equipment/coater1/alarms/3/ack")
    assert r.status_code == 200, r.text
    assert r.json()["result"] == "ok" and "a4" in r.json()["detail"]
    [a4] = [a for a in (await client.get("/api/v1/alarms", params={"equipment": "coater1"})).json()
            if a["occurrence_id"] == "a4"]
    assert a4["acknowledged"] and a4["acked_by"] == "local" and not a4["active"]
    again = await client.post("/api/v1/equipment/coater1/alarms/3/ack")
    assert again.status_code == 409 and "nothing to acknowledge" in again.json()["detail"]
    audit = (await client.get("/api/v1/audit", params={"equipment": "coater1"})).json()
    assert any(e["command"] == "AcknowledgeAlarm" and e["result"] == "ok" for e in audit), audit


async def test_one_occurrence_is_acknowledged_by_its_id(client):
    r = await client.post("/api/v1/equipment/form1/alarms/3003/ack", params={"occurrence_id": "a1"})
    assert r.status_code == 200, r.text
    stored = {a["occurrence_id"]: a["acknowledged"] for a in
              (await client.get("/api/v1/alarms", params={"equipment": "form1"})).json()}
    assert stored == {"a1": True, "a2": False, "a3": False}
    missing = await client.post("/api/v1/equipment/form1/alarms/3003/ack", params={"occurrence_id": "zz"})
    assert missing.status_code == 404


async def test_twa_weighs_each_value_by_how_long_it_held(client):
    """coater1's speed steps every 10 s through 30..36; in one-minute buckets twa and avg agree on even steps,
    and twa answers beside avg and last in one call."""
    r = await client.get("/api/v1/equipment/coater1/history",
                         params={"path": "web.line_speed", "start": str(T0), "end": str(T0 + 600), "bucket": "1min",
                                 "agg": "avg,twa,last"})
    assert r.status_code == 200, r.text
    assert r.json()["agg"] == ["avg", "twa", "last"]
    points = r.json()["series"][0]["points"]
    assert len(points) == 10
    for p in points[1:]:  # the first bucket has no sample before it to hold from
        assert p["twa"] == pytest.approx(p["avg"])  # samples 10 s apart, each holding 10 s
    only = await client.get("/api/v1/equipment/coater1/history",
                            params={"path": "web.line_speed", "start": str(T0), "end": str(T0 + 600), "bucket": "5min",
                                    "agg": "twa", "format": "csv"})
    rows = table(only.text)
    assert list(rows[0]) == ["equipment", "path", "unit", "ts", "time", "twa", "bad"]
    assert len(rows) == len({(T0 + i * STEP) // 300 for i in range(60)})  # the five-minute buckets holding samples
    assert all(30.0 <= float(x["twa"]) <= 36.0 for x in rows)
    bad = await client.get("/api/v1/equipment/coater1/history", params={"path": "web.line_speed", "bucket": "1min",
                                                                        "agg": "median"})
    assert bad.status_code == 422 and "twa" in bad.json()["detail"]
