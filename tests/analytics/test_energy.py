"""Energy and carbon per cell on a scripted day in a real SqliteStore, against figures computed by hand.

The script (a UTC day from T0, every reading 10 s apart):

* coater1 draws 36 kW all day; it coats roll R<k> in hour k (k = 0..23; the last is done 10 s early) and stands
  by (SBY) from 40,000 s to 43,600 s, inside the windows of R11 and R12.
* winder1 draws 3.6 kW all day; it stands by for the first hour, then winds J<m> from R<m // 2> every 1,800 s
  (m = 0..44); after J44 it keeps producing until the day ends (unfinished work).
* formation1 draws 7.2 kW producing and 0.36 kW standing by; tray t takes J<4t>..J<4t+3> 100 s after the last of
  them was wound and makes cells Z<4t>..Z<4t+3> 5,000 s later (t = 0..9); tray 10 is loaded and unfinished at the
  day's end.

With constant power and readings on the state changes, each figure is a product the test writes out.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.analytics.energy import EnergyReport
from gateway.analytics.energy_settings import EnergySettings
from gateway.api.app import create_app
from gateway.config import load_line
from gateway.runtime.device import event_ids
from gateway.runtime.line import LineRuntime
from gateway.samples import Quality, Sample
from gateway.store import SqliteStore
from tests.analytics.script import SPEC
from tests.analytics.test_oee_api import line_file

T0 = 1_699_999_200.0  # a whole UTC hour
DAY = 86_400.0
STEP = 10.0
MACHINES = {"coater1": "coater", "winder1": "winder", "formation1": "formation"}
E10 = SPEC.enum("e10_state")
COATER_KW, WINDER_KW, FORM_KW, FORM_IDLE_KW = 36.0, 3.6, 7.2, 0.36
COATER_IDLE = (40_000.0, 43_600.0)
JELLY_ROLLS = 45
TRAYS = 10  # finished in the day; tray 10 is loaded but not finished


def roll_end(k: int) -> float:
    """Hour k's roll; the last is done 10 s before the day ends (the coater's last seconds are unfinished work)."""
    return 3600.0 * (k + 1) - (10.0 if k == 23 else 0.0)


def jr_end(m: int) -> float:
    return 3600.0 + 1800.0 * (m + 1)


def tray_load(t: int) -> float:
    return jr_end(4 * t + 3) + 100.0


def coater_state(s: float) -> str:
    return "SBY" if COATER_IDLE[0] <= s < COATER_IDLE[1] else "PRD"


def winder_state(s: float) -> str:
    return "SBY" if s < 3600.0 else "PRD"


def formation_state(s: float) -> str:
    return "PRD" if any(tray_load(t) <= s < tray_load(t) + 5000.0 for t in range(TRAYS + 1)) else "SBY"


def formation_kw(s: float) -> float:
    return FORM_KW if formation_state(s) == "PRD" else FORM_IDLE_KW


async def write_day(store) -> None:
    seq = 0

    async def event(eq: str, kind: str, s: float, payload: dict) -> None:
        nonlocal seq
        seq += 1
        await store.record_event(eq, kind, T0 + s, seq, payload, ids=event_ids(payload))

    samples = []
    for eq, state, kw in (("coater1", coater_state, lambda s: COATER_KW), ("winder1", winder_state, lambda s: WINDER_KW),
                          ("formation1", formation_state, formation_kw)):
        energy = 5000.0  # the meter's reading at T0: what it drew before
        for k in range(int(DAY / STEP) + 1):  # the reading at the day's end closes it
            s = k * STEP
            samples.append(Sample(eq, "state.e10_state", E10[state(s)], "", T0 + s, T0 + s, Quality.GOOD, ""))
            samples.append(Sample(eq, "meter.active_energy", energy, "kW.h", T0 + s, T0 + s, Quality.GOOD, ""))
            energy += kw(s) * STEP / 3600.0
    for i in range(0, len(samples), 5000):
        await store.write_samples_async(samples[i:i + 5000])
    await event("coater1", "JobStarted", 0.0, {"job_id": "JOB-C"})
    for k in range(24):
        await event("coater1", "UnitProcessed", roll_end(k),
                    {"unit_type": "electrode_roll", "unit_id": f"R{k}", "result": "good", "made_from": [f"FOIL-{k}"]})
    await event("winder1", "JobStarted", 3600.0, {"job_id": "JOB-W"})
    for m in range(JELLY_ROLLS):
        await event("winder1", "UnitProcessed", jr_end(m),
                    {"unit_type": "jelly_roll", "unit_id": f"J{m}", "result": "good", "made_from": [f"R{m // 2}"]})
    for t in range(TRAYS + 1):
        for m in range(4 * t, 4 * t + 4):
            await event("formation1", "MaterialConsumed", tray_load(t),
                        {"material_type": "jelly_roll", "material_id": f"J{m}"})
        if t < TRAYS:
            for m in range(4 * t, 4 * t + 4):
                await event("formation1", "UnitProcessed", tray_load(t) + 5000.0,
                            {"unit_type": "cell", "unit_id": f"Z{m}", "result": "good", "made_from": [f"J{m}"]})
    await store.flush()


@pytest.fixture
async def store(tmp_path):
    async with SqliteStore(tmp_path / "day.sqlite") as s:
        await write_day(s)
        yield s


def by_hand() -> dict:
    """Every figure of the day, written out."""
    # coater: 0.01 kWh per second; roll k's window is hour k; the idle hour is spread by productive seconds.
    coater_rate = COATER_KW / 3600.0
    productive = {k: 3600.0 for k in range(24)}
    productive[11] = COATER_IDLE[0] - 11 * 3600.0  # 400 s before the idle hour
    productive[12] = 13 * 3600.0 - COATER_IDLE[1]  # 3,200 s after it
    productive[23] = roll_end(23) - 23 * 3600.0
    coater_idle = (COATER_IDLE[1] - COATER_IDLE[0]) * coater_rate
    roll = {k: productive[k] * coater_rate + coater_idle * productive[k] / sum(productive.values()) for k in range(24)}
    # winder: each jelly roll 1,800 s at 0.001 kWh/s, the first idle hour spread equally (equal productive time).
    winder_rate = WINDER_KW / 3600.0
    jelly = 1800.0 * winder_rate + 3600.0 * winder_rate / JELLY_ROLLS
    winder_unfinished = (DAY - jr_end(JELLY_ROLLS - 1)) * winder_rate
    # formation: a tray's 5,000 s at 7.2 kW shared by its 4 cells; idle at 0.36 kW spread equally over 40 cells.
    producing_s = (TRAYS + 1) * 5000.0 - (tray_load(TRAYS) + 5000.0 - DAY)
    form_idle = (DAY - producing_s) * FORM_IDLE_KW / 3600.0
    cell_form = 5000.0 * FORM_KW / 3600.0 / 4 + form_idle / (4 * TRAYS)
    form_unfinished = (DAY - tray_load(TRAYS)) * FORM_KW / 3600.0
    children = {k: sum(1 for m in range(JELLY_ROLLS) if m // 2 == k) for k in range(24)}
    cells = {f"Z{m}": {"coater": roll[m // 2] / children[m // 2], "winder": jelly, "formation": cell_form}
             for m in range(4 * TRAYS)}
    return {"meters": {"coater1": DAY * coater_rate, "winder1": DAY * winder_rate,
                       "formation1": (producing_s * FORM_KW + (DAY - producing_s) * FORM_IDLE_KW) / 3600.0},
            "cells": cells, "unattributed": (DAY - roll_end(23)) * coater_rate + winder_unfinished + form_unfinished}


async def test_energy_per_cell_by_stage_is_what_the_hand_gives_and_the_day_reconciles(store):
    want = by_hand()
    report = await EnergyReport(store, SPEC, MACHINES, EnergySettings(emission_factor=0.5)).report(T0, T0 + DAY, "Z5")
    for eq, kwh in want["meters"].items():
        assert report["machines"][eq]["metered_kwh"] == pytest.approx(kwh, rel=1e-9), eq
    assert report["cells"]["count"] == 4 * TRAYS
    assert report["cells"]["kwh"] == pytest.approx(sum(sum(c.values()) for c in want["cells"].values()), rel=1e-9)
    cell = report["cell"]
    for stage, kwh in want["cells"]["Z5"].items():
        assert cell["by_stage"][stage]["kwh"] == pytest.approx(kwh, rel=1e-9), stage
        assert cell["by_stage"][stage]["kg_co2e"] == pytest.approx(kwh * 0.5, rel=1e-9), stage
    assert report["unattributed"]["kwh"] == pytest.approx(want["unattributed"], rel=1e-9)
    rec = report["reconciliation"]
    assert rec["meters_kwh"] == pytest.approx(sum(want["meters"].values()), rel=1e-9)
    assert abs(rec["difference_kwh"]) < 1e-6 and abs(rec["difference_kg_co2e"]) < 1e-6
    # In process: R23 (never wound), J40..J44 with their shares of R20..R22 (tray 10 and J44 are not cells yet).
    assert report["in_process"]["count"] == 1 + 5
    assert rec["cells_kwh"] + rec["in_process_kwh"] + rec["unattributed_kwh"] == pytest.approx(rec["meters_kwh"])


async def test_idle_energy_left_unattributed_and_a_carbon_factor_per_hour(store):
    spread = await EnergyReport(store, SPEC, MACHINES, EnergySettings()).report(T0, T0 + DAY)
    kept = await EnergyReport(store, SPEC, MACHINES, EnergySettings(idle="none")).report(T0, T0 + DAY)
    idle = sum(m["idle_kwh"] for m in kept["machines"].values())
    assert idle == pytest.approx(1.0 * 36.0 + 1.0 * 3.6 + kept["machines"]["formation1"]["idle_kwh"])
    assert kept["unattributed"]["kwh"] == pytest.approx(spread["unattributed"]["kwh"] + idle)
    assert abs(kept["reconciliation"]["difference_kwh"]) < 1e-6
    # The grid is clean at night (0 kg/kWh from 22:00 to 06:00) and 0.6 by day: the coater's 36 kWh each hour.
    hours = [0.0 if h < 6 or h >= 22 else 0.6 for h in range(24)]
    day = await EnergyReport(store, SPEC, MACHINES, EnergySettings(emission_factors_by_hour=hours)).report(T0, T0 + DAY)
    assert day["machines"]["coater1"]["kg_co2e"] == pytest.approx(36.0 * sum(hours), rel=1e-9)
    assert abs(day["reconciliation"]["difference_kg_co2e"]) < 1e-6


async def test_a_replaced_meter_counts_from_its_new_reading(tmp_path):
    async with SqliteStore(tmp_path / "m.sqlite") as store:
        readings = [100.0, 101.0, 102.0, 0.5, 1.5]  # replaced after 102: the new meter starts near 0
        await store.write_samples_async([Sample("winder1", "meter.active_energy", v, "kW.h", T0 + 10 * i, T0 + 10 * i,
                                                Quality.GOOD, "") for i, v in enumerate(readings)])
        await store.flush()
        report = await EnergyReport(store, SPEC, {"winder1": "winder"}).report(T0, T0 + 50)
    assert report["machines"]["winder1"]["metered_kwh"] == pytest.approx(1.0 + 1.0 + 0.5 + 1.0)


async def test_the_energy_route_answers_and_refuses_with_reasons(store, tmp_path):
    """The line file's energy: section sets the defaults; a request may give its own factor and idle rule."""
    cfg = load_line(line_file(tmp_path, "energy: {emission_factor: 0.4, idle: count}"))
    assert cfg.energy is not None and cfg.energy.idle == "count"
    app = create_app(LineRuntime(cfg, SPEC, store), store, SPEC, cfg.api)
    day = {"start": repr(T0), "end": repr(T0 + DAY)}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.get("/api/v1/energy", params={**day, "cell": "Z0"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["settings"]["idle"] == "count" and abs(body["reconciliation"]["difference_kwh"]) < 1e-6
        assert body["cell"]["cell_id"] == "Z0" and body["cell"]["kg_co2e"] == pytest.approx(body["cell"]["kwh"] * 0.4)
        r = await client.get("/api/v1/energy", params={**day, "cell": "Z0", "factor": "0.25", "idle": "none"})
        assert r.json()["cell"]["kg_co2e"] == pytest.approx(r.json()["cell"]["kwh"] * 0.25)
        assert r.json()["cell"]["kwh"] < body["cell"]["kwh"]  # no idle share
        missing = await client.get("/api/v1/energy", params={**day, "cell": "NOPE"})
        assert missing.status_code == 404 and "NOPE" in missing.json()["detail"]
        bad = await client.get("/api/v1/energy", params={"idle": "sometimes"})
        assert bad.status_code == 422


def test_the_cli_reports_the_same_reconciled_figures(tmp_path):
    """`linegw report energy` on a line file whose store holds the scripted day: as JSON, as a table, and a clear
    refusal of a bad rule."""
    async def fill() -> None:
        async with SqliteStore(tmp_path / "line.sqlite") as s:
            await write_day(s)

    asyncio.run(fill())
    path = line_file(tmp_path, "energy: {emission_factor: 0.5}")
    cmd = [str(Path(sys.executable).parent / "linegw"), "report", "energy", str(path), "--range",
           f"{T0}..{T0 + DAY}", "--cell", "Z5"]
    out = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["cell"]["by_stage"]["winder"]["kwh"] == pytest.approx(by_hand()["cells"]["Z5"]["winder"], rel=1e-9)
    assert abs(body["reconciliation"]["difference_kwh"]) < 1e-6
    table = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and "reconciled: meters" in table.stdout and "cell Z5:" in table.stdout
    bad = subprocess.run([*cmd, "--idle", "sometimes"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "give time, count or none" in bad.stderr + bad.stdout
