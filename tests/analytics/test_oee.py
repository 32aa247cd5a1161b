"""Equipment time and OEE from a scripted history in a real SqliteStore, against figures computed by hand.

The winder's hour (T0 deliberately not on a bucket boundary):
  0-1200 s PRD | 1200-1500 UDT (separator break, a stop reason, 1200-1490) | 1500-2400 PRD |
  2400-2700 SBY (counters reset at 2450) | 2700-3000 link down | 3000-3300 PRD | 3300-3400 SDT | 3400-3600 PRD
200 units at an actual cycle of 12 s, 10 of them rejects; design speed 6/min (ideal cycle 10 s).
"""

from __future__ import annotations

from datetime import UTC

import pytest

from gateway.analytics import timeline as tl
from gateway.analytics.oee import OeeCalculator, derive_e10
from gateway.analytics.shifts import Shifts, occurrences
from gateway.store import SqliteStore
from tests.analytics.script import PACKML, SPEC, Machine, alarm
from tests.store.stores import SealingStore

T0 = 1_700_003_003.5
T1 = T0 + 3600
PRD_PERIODS = [(0, 1200), (1500, 2400), (3000, 3300), (3400, 3600)]


def winder_script() -> Machine:
    periods = [(0, 1200, "PRD"), (1200, 1500, "UDT"), (1500, 2400, "PRD"), (2400, 2700, "SBY"),
               (2700, 3000, "SBY"), (3000, 3300, "PRD"), (3300, 3400, "SDT"), (3400, 3600, "PRD")]
    # 200 units spread over the PRD periods, one every 12 s of productive time; every 20th a reject.
    units, k = [], 0
    for a, b in PRD_PERIODS:
        t = a + 6.0
        while t < b and k < 200:
            units.append((T0 + t, k % 20 != 19))
            k += 1
            t += 12.0
    assert k == 200, k
    return Machine("winder1", T0 - 100, T1 + 50,
                   [(T0 - 200, T0, "PRD")] + [(T0 + a, T0 + b, s) for a, b, s in periods] + [(T1, T1 + 100, "PRD")],
                   units=units, resets=[T0 + 2450], link_down=[(T0 + 2700, T0 + 3000)])


def steady(equipment: str, prd_share: float) -> Machine:
    """A machine productive for the first prd_share of the hour and standing by (starved) after."""
    split = T0 + 3600 * prd_share
    return Machine(equipment, T0 - 100, T1 + 50, [(T0 - 200, split, "PRD"), (split, T1 + 100, "SBY")],
                   units=[(T0 + 30 * i, True) for i in range(1, int(3600 * prd_share / 30))])


@pytest.fixture(params=["head", "sealed"])
async def store(tmp_path, request):
    """The scripted line in the store's head rows, and sealed into compressed chunks (as a past day is)."""
    s = (SqliteStore if request.param == "head" else SealingStore)(tmp_path / "line.sqlite")
    await s.start()
    await winder_script().write(s)
    await steady("coater1", 0.4).write(s)
    await steady("formation1", 0.5).write(s)
    await alarm(s, "winder1", 2002, T0 + 1200, T0 + 1490, stop_reason=True)
    await alarm(s, "winder1", 1, T0 + 3300, T0 + 3350, stop_reason=True)  # during SDT: no unscheduled downtime
    await alarm(s, "winder1", 2001, T0 + 100, T0 + 200, stop_reason=False)  # a warning: not a stop reason
    if request.param == "sealed":
        assert s.stats()["sealed_samples"] > 0
    yield s
    await s.close()


def calc(store) -> OeeCalculator:
    return OeeCalculator(store, SPEC, {"coater1": "coater", "winder1": "winder", "formation1": "formation"})


async def test_e10_times_add_up_to_the_range_exactly(store):
    for t0, t1 in [(T0, T1), (T0 + 17.25, T0 + 2999.125), (T0 - 3000, T0 + 10)]:
        r = await calc(store).machine("winder1", t0, t1)
        assert sum(r.tally.time_us.values()) == tl.us(t1) - tl.us(t0)


async def test_winder_times_and_oee_match_the_hand_computed_values(store):
    r = (await calc(store).report(T0, T1, ["winder1"]))["machines"][0]
    assert r["e10_source"] == "state.e10_state"
    assert r["time_s"] == {"PRD": 2600.0, "SBY": 300.0, "ENG": 0.0, "SDT": 100.0, "UDT": 300.0, "NST": 0.0,
                           "unobserved": 300.0}
    # PBT = PRD + SBY + UDT = 3200 s; 200 units, 190 good; ideal cycle 10 s.
    assert r["counts"] == {"processed": 200, "good": 190, "defective": 10}
    assert r["availability"] == pytest.approx(2600 / 3200)
    assert r["effectiveness"] == pytest.approx(200 * 10 / 2600)
    assert r["quality_ratio"] == pytest.approx(0.95)
    assert r["oee"] == pytest.approx(2600 / 3200 * 2000 / 2600 * 0.95)  # = 0.59375
    assert r["failures"] == 1 and r["mtbf_s"] == pytest.approx(2600) and r["mttr_s"] == pytest.approx(300)
    [stop, estop] = r["stop_reasons"]
    assert (stop["code"], stop["occurrences"], stop["active_s"], stop["downtime_s"]) == (2002, 1, 290.0, 290.0)
    assert (estop["code"], estop["active_s"], estop["downtime_s"]) == (1, 50.0, 0.0)
    assert stop["cumulative_share"] == 1.0


async def test_a_part_of_the_range_counts_only_its_own_units(store):
    """[600, 1800): PRD 600 + 300, UDT 300; units counted at 12 s steps in both PRD stretches."""
    r = await calc(store).machine("winder1", T0 + 600, T0 + 1800)
    expected = [t for t, _ in winder_script().units if T0 + 600 <= t < T0 + 1800]
    assert r.tally.processed == len(expected)
    assert r.tally.s("PRD") == 900 and r.tally.s("UDT") == 300
    assert r.tally.kpis()["effectiveness"] == pytest.approx(len(expected) * 10 / 900)


async def test_the_bottleneck_is_the_stage_the_script_made_busiest(store):
    report = await calc(store).report(T0, T1)
    neck = report["bottleneck"]
    assert neck["stage"] == "winder" and neck["equipment"] == "winder1"
    shares = {e["stage"]: e["active_share"] for e in neck["evidence"]}
    assert shares["winder"] == pytest.approx((2600 + 300) / (2600 + 300 + 300))
    assert shares["coater"] == pytest.approx(0.4) and shares["formation"] == pytest.approx(0.5)
    assert report["line"]["oee"] == pytest.approx(0.59375)
    assert [s["stage"] for s in report["stages"]] == ["coater", "winder", "formation"]


async def test_e10_derived_from_packml_for_a_machine_without_e10_state(tmp_path):
    """Execute -> PRD; Held with a stop-reason alarm -> UDT, without -> SDT; Idle -> SBY."""
    m = Machine("winder2", T0 - 10, T0 + 400,
                [(T0 - 20, T0 + 100, "Execute"), (T0 + 100, T0 + 200, "Held"), (T0 + 200, T0 + 300, "Held"),
                 (T0 + 300, T0 + 500, "Idle")], state_path="state.packml_state", enum=PACKML)
    async with SqliteStore(tmp_path / "s.sqlite") as store:
        await m.write(store)
        await alarm(store, "winder2", 2002, T0 + 100, T0 + 200, stop_reason=True)
        r = await OeeCalculator(store, SPEC, {"winder2": "winder"}).machine("winder2", T0, T0 + 400)
    assert r.e10_source.startswith("derived")
    assert {k: v for k, v in r.tally.time_us.items() if v} == {"PRD": 100_000_000, "UDT": 100_000_000,
                                                               "SDT": 100_000_000, "SBY": 100_000_000}
    assert derive_e10("Execute", "Setup", False) == "ENG" and derive_e10("Idle", "Maintenance", False) == "SDT"
    assert derive_e10("Undefined", None, False) == "NST" and derive_e10("code 77", None, False) is None


async def test_per_shift_figures_split_the_range_and_add_up(store):
    shifts = Shifts.model_validate({"timezone": "UTC", "calendar": [
        {"name": "a", "start": "23:30", "end": "00:00"}, {"name": "b", "start": "00:00", "end": "23:30"}]})
    occ = occurrences(shifts, T0, T1)  # T0 is 23:03:23.5 UTC: b, a, b
    assert [o.name for o in occ] == ["b", "a", "b"]
    assert sum(o.end - o.start for o in occ) == pytest.approx(3600)
    rows = await calc(store).shift_report(shifts, T0, T1, ["winder1"])
    per_occurrence = [r for r in rows if r["day"] is not None]
    assert len(per_occurrence) == len(occ)
    total_prd = sum(r["machines"][0]["time_s"]["PRD"] for r in per_occurrence)
    assert total_prd == pytest.approx(2600)
    assert sum(r["machines"][0]["counts"]["processed"] for r in per_occurrence) == 200
    summed = [r for r in rows if r["day"] is None]
    assert {r["shift"] for r in summed} == {o.name for o in occ}


def test_overlapping_shifts_are_refused_naming_both():
    with pytest.raises(ValueError, match="'early' and 'late' overlap"):
        Shifts.model_validate({"calendar": [{"name": "early", "start": "06:00", "end": "14:30"},
                                            {"name": "late", "start": "14:00", "end": "22:00"}]})
    with pytest.raises(ValueError, match="not a time of day"):
        Shifts.model_validate({"calendar": [{"name": "x", "start": "6:00", "end": "14:00"}]})


def test_shifts_keep_their_local_hours_across_a_clock_change():
    """Europe/Berlin went from 02:00 to 03:00 on 2026-03-29: that night shift lasted 7 hours, the next day's 8."""
    from datetime import datetime

    shifts = Shifts.model_validate({"timezone": "Europe/Berlin", "calendar": [
        {"name": "day", "start": "06:00", "end": "22:00"}, {"name": "night", "start": "22:00", "end": "06:00"}]})
    t0 = datetime(2026, 3, 28, 12, tzinfo=UTC).timestamp()
    occ = occurrences(shifts, t0, t0 + 2 * 86400)
    nights = [o for o in occ if o.name == "night"]
    assert [str(o.day) for o in nights] == ["2026-03-28", "2026-03-29"]
    assert [(o.end - o.start) / 3600 for o in nights] == [7.0, 8.0]
    assert datetime.fromtimestamp(nights[0].end, UTC).hour == 4  # 06:00 CEST
    assert sum(o.end - o.start for o in occ) == pytest.approx(2 * 86400)
