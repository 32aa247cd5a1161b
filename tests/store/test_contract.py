"""The store contract: what goes in comes out, history is exact, records and the outbox survive a reopen.

Runs against every store in tests/store/stores.py (the SQLite store on its head
and with every flush sealed into chunks). Every test uses a real database file
under tmp_path. SQLite's own matters (layout migration, crash safety, bytes on
disk) are in test_sqlite.py.
"""

from __future__ import annotations

import asyncio
import math
import os
import time

import pytest

from gateway.samples import Quality, Sample
from gateway.store import (
    Lifecycle,
    Outbox,
    Records,
    SampleHistory,
    SampleWriter,
    SqliteStore,
    Store,
    StoreClosed,
    Upkeep,
)
from tests.store.stores import EQ, T0, SealingStore, sample
from tests.waiting import wait_for


def test_every_store_follows_the_store_protocol_and_each_of_its_parts(tmp_path, store_cls):
    s = store_cls(tmp_path / "x.sqlite")
    for part in (Store, Lifecycle, SampleWriter, SampleHistory, Records, Outbox, Upkeep):
        assert isinstance(s, part), part.__name__


def members(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_the_protocol_is_the_whole_of_what_the_store_offers():
    """A public method outside the protocol would be one callers come to depend on and another store lacks."""
    extra = members(SqliteStore) - members(Store)
    assert extra == {"compact"}, extra  # sealing now: the embedded store's own, for tools and tests
    assert members(Store) == set().union(*(members(p) for p in (Lifecycle, SampleWriter, SampleHistory, Records,
                                                                 Outbox, Upkeep)))

    class Wider(SqliteStore):
        def vacuum(self) -> None: ...
    assert members(Wider) - members(Store) == {"compact", "vacuum"}  # the check sees a method added


# --- samples round trip ---------------------------------------------------------------------------

VALUES = [
    ("speed", 12.5, Quality.GOOD, ""),
    ("count", 42, Quality.GOOD, ""),
    ("huge", 2**70, Quality.GOOD, ""),
    ("negative", -7, Quality.UNCERTAIN, "stale"),
    ("enabled", True, Quality.GOOD, ""),
    ("disabled", False, Quality.GOOD, ""),
    ("lot", "LOT-0042", Quality.GOOD, ""),
    ("empty_text", "", Quality.GOOD, ""),
    ("missing", None, Quality.BAD, "link_down"),
    ("limit", float("inf"), Quality.BAD, "out_of_range"),
]


async def test_values_of_every_type_and_quality_come_back_as_written(store):
    written = [sample(p, v, T0 + i, q, r, unit="m/min" if p == "speed" else "") for i, (p, v, q, r) in enumerate(VALUES)]
    store.write_samples(written)
    await store.flush()

    for s in written:
        rows = await store.history(EQ, s.path, T0 - 1, T0 + 100)
        assert len(rows) == 1
        row = rows[0]
        expected = float(s.value) if s.path == "huge" else s.value
        assert row["value"] == expected and type(row["value"]) is type(expected), s.path
        assert (row["ts"], row["gateway_ts"], row["quality"], row["reason"]) == (
            s.source_ts, s.gateway_ts, int(s.quality), s.reason)

    latest = {s.path: s for s in await store.latest(EQ)}
    assert latest["enabled"].value is True and latest["disabled"].value is False
    assert latest["count"].value == 42 and type(latest["count"].value) is int
    assert latest["lot"].value == "LOT-0042"
    assert latest["missing"] == written[8]
    assert latest["speed"].unit == "m/min"

    assert sorted(await store.series(EQ)) == sorted((EQ, s.path, s.unit) for s in written)


async def test_raw_history_is_ordered_bounded_and_limited(store):
    store.write_samples([sample("v", float(i), T0 + i) for i in range(100)])
    await store.flush()
    rows = await store.history(EQ, "v", T0 + 10, T0 + 20)
    assert [r["value"] for r in rows] == [float(i) for i in range(10, 20)]  # start inclusive, end exclusive
    assert [r["value"] for r in await store.history(EQ, "v", T0, T0 + 100, limit=3)] == [0.0, 1.0, 2.0]
    assert await store.history(EQ, "no.such.path", T0, T0 + 100) == []
    assert await store.history("nobody", "v", T0, T0 + 100) == []


async def test_samples_arriving_out_of_order_are_returned_in_time_order(store):
    store.write_samples([sample("v", float(i), T0 + i) for i in range(50, 100)])
    await store.flush()
    store.write_samples([sample("v", float(i), T0 + i) for i in reversed(range(50))])
    await store.flush()
    rows = await store.history(EQ, "v", T0, T0 + 100)
    assert [r["value"] for r in rows] == [float(i) for i in range(100)]
    assert (await store.latest(EQ))[0].value == 99.0


# --- bucketed history ----------------------------------------------------------------------------------

def known_series() -> list[Sample]:
    """Twenty minutes at 2 Hz with bad and uncertain samples sprinkled in, and some text."""
    out = []
    for i in range(2400):
        ts = T0 + i * 0.5
        value = round(50 + 40 * math.sin(i / 37.0), 3)
        if i % 97 == 5:
            out.append(sample("temp", None, ts, Quality.BAD, "nan"))
        elif i % 89 == 3:
            out.append(sample("temp", 1e6, ts, Quality.UNCERTAIN, "out_of_range"))
        elif i % 113 == 7:
            out.append(sample("temp", "warming", ts))
        else:
            out.append(sample("temp", value if i % 2 else int(value), ts))
    return out


def expected_buckets(samples: list[Sample], start: float, end: float, bucket: float) -> dict[int, dict]:
    """The aggregates computed the slow, obvious way."""
    out: dict[int, dict] = {}
    for s in sorted(samples, key=lambda s: s.source_ts):
        if not start <= s.source_ts < end:
            continue
        b = out.setdefault(math.floor(s.source_ts / bucket), {"good": [], "bad": 0, "count": 0})
        if s.quality != Quality.GOOD:
            b["bad"] += 1
            continue
        b["count"] += 1
        if isinstance(s.value, (int, float)):
            b["good"].append(s.value)
    return out


async def write_in_pieces(store: SqliteStore, samples: list[Sample], piece: int) -> None:
    """Several commits, later data first, so cells are merged across batches and out of order."""
    pieces = [samples[i:i + piece] for i in range(0, len(samples), piece)]
    for p in pieces[1::2] + pieces[::2]:
        store.write_samples(p)
        await store.flush()


@pytest.mark.parametrize("bucket", [60.0, 10.0, 7.0, 300.0])
async def test_bucketed_history_is_exact_over_good_samples_and_counts_bad_ones(store, bucket):
    data = known_series()
    await write_in_pieces(store, data, 37)
    start, end = T0 + 12.3, T0 + 1100.7
    aggs = ["avg", "min", "max", "first", "last", "count"]
    rows = await store.history(EQ, "temp", start, end, bucket_s=bucket, agg=aggs)
    expected = expected_buckets(data, start, end, bucket)

    assert [r["ts"] for r in rows] == [k * bucket for k in sorted(expected)]
    for row in rows:
        e = expected[round(row["ts"] / bucket)]
        assert row["count"] == e["count"]
        assert row["bad"] == e["bad"]
        assert row["avg"] == pytest.approx(sum(e["good"]) / len(e["good"]))
        assert (row["min"], row["max"]) == (min(e["good"]), max(e["good"]))
        assert (row["first"], row["last"]) == (e["good"][0], e["good"][-1])
    assert sum(r["bad"] for r in rows) > 0  # the data does have bad samples in range
    assert all(r["max"] < 1e6 for r in rows)  # the uncertain spike is not averaged in


async def test_a_single_aggregate_and_a_limit(store):
    store.write_samples([sample("v", float(i), T0 + i) for i in range(600)])
    await store.flush()
    rows = await store.history(EQ, "v", T0, T0 + 600, bucket_s=60, agg="max", limit=2)
    assert len(rows) == 2 and set(rows[0]) == {"ts", "max", "bad"}
    with pytest.raises(ValueError, match="median"):
        await store.history(EQ, "v", T0, T0 + 600, bucket_s=60, agg="median")


async def test_a_gap_stays_visible(store):
    t = 1_700_000_040.0  # a multiple of 60
    before = [sample("v", 1.0, t + i) for i in range(60)]
    marker = sample("v", None, t + 65, Quality.BAD, "link_down")
    after = [sample("v", 3.0, t + 300 + i) for i in range(60)]
    store.write_samples(before + [marker] + after)
    await store.flush()

    rows = await store.history(EQ, "v", t, t + 360, bucket_s=60, agg=["avg", "count"])
    assert [r["ts"] for r in rows] == [t, t + 60, t + 300]  # nothing made up for the silent minutes
    assert rows[1] == {"ts": t + 60, "avg": None, "count": 0, "bad": 1}  # the link-down marker's bucket
    assert rows[0]["avg"] == 1.0 and rows[2]["avg"] == 3.0

    raw = await store.history(EQ, "v", t + 55, t + 310)
    assert [(r["value"], r["reason"]) for r in raw[4:7]] == [(1.0, ""), (None, "link_down"), (3.0, "")]


async def test_link_history_gives_down_intervals(store):
    await store.record_link(EQ, 100.0, True, "")
    await store.record_link(EQ, 200.0, False, "connection refused")
    await store.record_link(EQ, 260.0, True, "")
    await store.record_link(EQ, 500.0, False, "timeout")
    assert await store.link_history(EQ, 0.0, 1000.0) == [
        {"down_ts": 200.0, "up_ts": 260.0, "reason": "connection refused"},
        {"down_ts": 500.0, "up_ts": None, "reason": "timeout"},
    ]
    # A range that starts inside an outage still shows it.
    assert await store.link_history(EQ, 230.0, 240.0) == [
        {"down_ts": 200.0, "up_ts": 260.0, "reason": "connection refused"}]
    assert await store.link_history("winder1", 0.0, 1000.0) == []


# --- latest -----------------------------------------------------------------------------------------------

async def test_latest_is_the_newest_per_series_and_survives_a_reopen(tmp_path, store_cls):
    path = tmp_path / "store.sqlite"
    async with store_cls(path) as s:
        s.write_samples([sample("a", float(i), T0 + i) for i in range(10)])
        s.write_samples([sample("b", "x", T0 + 5), sample("b", "older", T0 + 1)])
        s.write_samples([sample("a", 9.5, T0 + 3, eq="winder1")])
        await s.flush()
        first = await s.latest()
        assert [(x.equipment, x.path, x.value) for x in first] == [
            (EQ, "a", 9.0), (EQ, "b", "x"), ("winder1", "a", 9.5)]
        assert [x.equipment for x in await s.latest("winder1")] == ["winder1"]
    async with store_cls(path) as s:
        assert await s.latest() == first


async def test_latest_finds_a_series_that_stopped_long_before_the_others(tmp_path, store_cls):
    """The newest ten-second cells hold only the running series: the reopened store looks further back."""
    path = tmp_path / "store.sqlite"
    async with store_cls(path) as s:
        s.write_samples([sample("stopped", 1.5, T0), sample("stopped", 2.5, T0 + 1)])
        for k in range(60):
            s.write_samples([sample("running", float(k), T0 + 10 * k)])
        s.write_samples([sample("late", 7.0, T0 + 5)])  # written last, its time among the oldest
        await s.flush()
    async with store_cls(path) as s:
        assert {x.path: x.value for x in await s.latest()} == {"stopped": 2.5, "running": 59.0, "late": 7.0}


async def test_history_reads_samples_far_apart_in_time(store):
    """A clock years off puts a sample far from the others: every one of them is read back, in time order."""
    store.write_samples([sample("x", 2.0, T0), sample("x", 1.0, 1000.0), sample("y", 3.0, 5e5), sample("x", 0.5, -50.0)])
    await store.flush()
    assert [r["value"] for r in await store.history(EQ, "x", -math.inf, math.inf)] == [0.5, 1.0, 2.0]
    assert [r["value"] for r in await store.history(EQ, "x", 500.0, 2e9)] == [1.0, 2.0]
    assert [r["value"] for r in await store.history(EQ, "y", 0, 2e9)] == [3.0]


# --- alarms, events, audit ----------------------------------------------------------------------------------

async def test_alarm_lifecycle_raised_acknowledged_cleared(store):
    await store.record_alarm(EQ, "occ-1", 1201, "Web break", 900, "raised", 100.0, True, None)
    await store.record_alarm(EQ, "occ-2", 1305, "Dryer over-temperature", 700, "raised", 110.0, False, None)
    active = await store.alarms(active_only=True)
    assert [a["occurrence_id"] for a in active] == ["occ-2", "occ-1"]  # newest first
    assert active[1]["stop_reason"] is True and active[1]["acknowledged"] is False

    await store.record_alarm(EQ, "occ-1", 1201, "Web break", 900, "acknowledged", 120.0, True, "operator1")
    await store.record_alarm(EQ, "occ-1", 1201, "Web break", 900, "cleared", 130.0, True, None)
    [occ1] = [a for a in await store.alarms(EQ) if a["occurrence_id"] == "occ-1"]
    assert (occ1["raised_ts"], occ1["acked_ts"], occ1["acked_by"], occ1["cleared_ts"]) == (100.0, 120.0, "operator1", 130.0)
    assert occ1["active"] is False and occ1["acknowledged"] is True
    assert [a["occurrence_id"] for a in await store.alarms(active_only=True)] == ["occ-2"]

    assert [a["occurrence_id"] for a in await store.alarms(start=105.0)] == ["occ-2"]
    assert [a["occurrence_id"] for a in await store.alarms(end=105.0)] == ["occ-1"]
    assert await store.alarms(equipment="winder1") == []
    with pytest.raises(ValueError, match="state"):
        await store.record_alarm(EQ, "occ-3", 1, "x", 1, "exploded", 1.0, False, None)


async def test_events_and_the_ids_they_reference(store):
    roll = {"unit_id": "ER-7", "unit_type": "electrode_roll", "made_from": []}
    jelly = {"unit_id": "JR-1", "unit_type": "jelly_roll", "made_from": ["ER-7", "ER-8"]}
    e1 = await store.record_event("coater1", "UnitProcessed", 100.0, 1, roll, ids=["ER-7"])
    e2 = await store.record_event("winder1", "UnitProcessed", 200.0, 1, jelly, ids=["JR-1", "ER-7", "ER-8"])
    await store.record_event("winder1", "StateChanged", 150.0, 2, {"current": "Execute"})
    assert await store.record_event("coater1", "UnitProcessed", 100.0, 1, roll, ids=["ER-7"]) == e1  # stored once

    refs = await store.events_referencing("ER-7")
    assert [(e["id"], e["equipment"], e["payload"]) for e in refs] == [(e1, "coater1", roll), (e2, "winder1", jelly)]
    assert [e["id"] for e in await store.events_referencing("JR-1")] == [e2]
    assert await store.events_referencing("NOPE") == []

    assert [e["type"] for e in await store.events()] == ["UnitProcessed", "StateChanged", "UnitProcessed"]
    assert [e["source_ts"] for e in await store.events(equipment="winder1")] == [200.0, 150.0]
    assert [e["seq"] for e in await store.events(event_type="StateChanged")] == [2]
    assert [e["source_ts"] for e in await store.events(start=120.0, end=200.0)] == [150.0]
    assert len(await store.events(limit=1)) == 1


async def test_a_batch_of_events_is_stored_in_order_in_one_commit(store):
    """A tray's end: hundreds of cell events, stored as record_event stores each, with one commit for them all."""
    cells = [("UnitProcessed", 1000.0 + i, i + 1, {"unit_id": f"CL-{i}", "made_from": [f"JR-{i}"]}, [f"CL-{i}", f"JR-{i}"])
             for i in range(300)]
    before = store.stats()["batches"]
    ids = await store.record_events("form1", cells)
    assert store.stats()["batches"] == before + 1
    assert len(set(ids)) == 300 and ids == sorted(ids)  # in the order given
    assert await store.record_events("form1", cells[:2]) == ids[:2]  # the same events again: stored once
    assert await store.record_event("form1", *cells[5][:4], ids=cells[5][4]) == ids[5]
    stored = await store.events(equipment="form1", limit=1000)
    assert [e["seq"] for e in stored] == list(range(300, 0, -1))
    assert [e["id"] for e in await store.events_referencing("JR-7")] == [ids[7]]
    assert await store.record_events("form1", []) == []


async def test_audit_log_newest_first(store):
    await store.record_audit(10.0, "local", "engineer", EQ, "Start", {}, 1, "ok", "started")
    await store.record_audit(11.0, "operator1", "operator", "winder1", "Stop", {"mode": "fast"}, 5, "cannot_perform_now",
                             "not running")
    rows = await store.audit()
    assert [r["command"] for r in rows] == ["Stop", "Start"]
    assert rows[0]["args"] == {"mode": "fast"} and rows[0]["result_code"] == 5 and rows[0]["user"] == "operator1"
    assert [r["equipment"] for r in await store.audit(equipment=EQ)] == [EQ]
    assert len(await store.audit(limit=1)) == 1


# --- outbox ------------------------------------------------------------------------------------------------

async def test_outbox_hands_out_samples_in_commit_order_and_cursors_persist(tmp_path, store_cls):
    path = tmp_path / "store.sqlite"
    first = [sample("a", float(i), T0 + i) for i in range(5)]
    second = [sample("b", float(i), T0 + i) for i in range(5)]
    async with store_cls(path) as s:
        assert await s.register_consumer("influx") == 0
        assert await s.get_cursor("influx") == 0 and await s.get_cursor("other") is None
        s.write_samples(first)
        await s.flush()
        s.write_samples(second)
        await s.flush()
        rows, cursor = await s.read_since(0, 3)
        assert [x for _, x in rows] == first[:3]
        assert [seq for seq, _ in rows] == sorted(seq for seq, _ in rows)
        rows2, cursor2 = await s.read_since(cursor, 100)
        assert [x for _, x in rows2] == first[3:] + second  # whole batches in commit order
        assert await s.read_since(cursor2, 100) == ([], cursor2)
        await s.set_cursor("influx", cursor)
    async with store_cls(path) as s:
        cursor = await s.get_cursor("influx")
        rows, _ = await s.read_since(cursor, 100)
        assert [x for _, x in rows] == first[3:] + second
        s.write_samples([sample("c", 1.0, T0)])
        await s.flush()
        more, _ = await s.read_since(rows[-1][0], 100)
        assert [x.path for _, x in more] == ["c"]  # sequence numbers go on after a reopen


# --- retention -----------------------------------------------------------------------------------------------

async def consumer_and_old_and_new_samples(s: SqliteStore, now: float) -> tuple[list[Sample], list[Sample]]:
    """Register consumer "mqtt", then store 100 samples recorded ten days ago and 10 from the last minute."""
    old = [Sample(EQ, "v", float(i), "", now - 10 * 86400 + i, now - 10 * 86400 + i, Quality.GOOD, "")
           for i in range(100)]
    new = [Sample(EQ, "v", float(i), "", now - 60 + i, now - 60 + i, Quality.GOOD, "") for i in range(10)]
    await s.register_consumer("mqtt")
    s.write_samples(old)
    await s.flush()
    s.write_samples(new)
    await s.flush()
    return old, new


async def test_retention_deletes_old_samples_but_waits_for_outbox_consumers(tmp_path):
    now = time.time()
    async with SqliteStore(tmp_path / "store.sqlite", retention_days=1) as s:
        _old, new = await consumer_and_old_and_new_samples(s, now)
        assert await s.apply_retention() == 0  # the consumer has not read anything yet
        assert s.stats()["retention_held_by"] == "mqtt"

        rows, _ = await s.read_since(0, 40)
        await s.set_cursor("mqtt", rows[-1][0])
        assert await s.apply_retention() == 40  # only what the consumer has passed
        await s.unregister_consumer("mqtt")
        assert await s.apply_retention() == 60

        assert await s.history(EQ, "v", now - 11 * 86400, now - 86400) == []
        assert await s.history(EQ, "v", now - 11 * 86400, now - 86400, bucket_s=60) == []
        assert [r["value"] for r in await s.history(EQ, "v", now - 3600, now + 1)] == [float(i) for i in range(10)]
        left, _ = await s.read_since(0, 1000)
        assert [x for _, x in left] == new
        assert s.stats()["retention_deleted"] == 100 and s.stats()["retention_held_by"] is None


async def test_sealed_samples_expire_from_history_while_the_outbox_keeps_them_for_a_consumer(tmp_path):
    now = time.time()
    async with SealingStore(tmp_path / "store.sqlite", retention_days=1) as s:
        old, new = await consumer_and_old_and_new_samples(s, now)
        assert s.stats()["sealed_samples"] == 110  # all of it in chunks, the head kept for the consumer
        assert await s.apply_retention() == 100  # history loses the expired samples ...
        assert s.stats()["retention_held_by"] == "mqtt"
        assert await s.history(EQ, "v", now - 11 * 86400, now - 86400) == []
        assert await s.history(EQ, "v", now - 11 * 86400, now - 86400, bucket_s=60) == []
        assert [r["value"] for r in await s.history(EQ, "v", now - 3600, now + 1)] == [float(i) for i in range(10)]
        rows, cursor = await s.read_since(0, 1000)
        assert [x for _, x in rows] == old + new  # ... the consumer does not

        await s.set_cursor("mqtt", cursor)
        assert await s.apply_retention() == 0  # the outbox copies are not samples lost twice
        await s.compact()
        left, _ = await s.read_since(0, 1000)
        assert [x for _, x in left] == new[-1:]  # passed and sealed: the head keeps only its newest row
        assert s.stats()["retention_deleted"] == 100 and s.stats()["retention_held_by"] is None


async def _old_and_new_records(s: SqliteStore, now: float) -> None:
    old, new = now - 10 * 86400, now - 60
    await s.record_alarm(EQ, "old-cleared", 1201, "Web break", 900, "raised", old, True, None)
    await s.record_alarm(EQ, "old-cleared", 1201, "Web break", 900, "cleared", old + 1, True, None)
    await s.record_alarm(EQ, "old-active", 1305, "Dryer over-temperature", 700, "raised", old, False, None)
    await s.record_alarm(EQ, "new", 1201, "Web break", 900, "raised", new, True, None)
    await s.record_event(EQ, "UnitProcessed", old, 1, {"unit_id": "ER-1"}, ids=["ER-1"])
    await s.record_event(EQ, "UnitProcessed", new, 2, {"unit_id": "ER-2"}, ids=["ER-2"])
    await s.record_audit(old, "local", "engineer", EQ, "Start", {}, 1, "ok", "started")
    await s.record_audit(new, "local", "engineer", EQ, "Stop", {}, 1, "ok", "stopped")


async def test_alarms_events_and_audit_are_kept_unless_a_retention_is_given(tmp_path):
    now = time.time()
    async with SqliteStore(tmp_path / "kept.sqlite", retention_days=1) as s:  # samples only: records stay
        await _old_and_new_records(s, now)
        await s.apply_retention()
        assert (len(await s.alarms()), len(await s.events()), len(await s.audit())) == (3, 2, 2)
    days = {"alarms": 1, "events": 2, "audit": 3}
    async with SqliteStore(tmp_path / "trimmed.sqlite", records_retention_days=days) as s:
        await _old_and_new_records(s, now)
        assert await s.apply_retention() == 0  # no sample retention
        # An alarm still active is kept however old; a cleared one goes by the time it cleared.
        assert {a["occurrence_id"] for a in await s.alarms()} == {"old-active", "new"}
        assert [e["seq"] for e in await s.events()] == [2] and await s.events_referencing("ER-1") == []
        assert [r["command"] for r in await s.audit()] == ["Stop"]
        assert s.stats()["records_deleted"] == {"alarms": 1, "events": 1, "audit": 1}
    with pytest.raises(ValueError, match="'alarm' is not a record kind; use alarms, events, audit"):
        SqliteStore(tmp_path / "x.sqlite", records_retention_days={"alarm": 1})
    with pytest.raises(ValueError, match=r"records_retention_days.audit=0: must be positive"):
        SqliteStore(tmp_path / "x.sqlite", records_retention_days={"audit": 0})


async def test_record_retention_runs_on_its_own_in_the_writer(tmp_path):
    async with SqliteStore(tmp_path / "store.sqlite", records_retention_days={"audit": 1},
                           retention_check_s=0.01) as s:
        await s.record_audit(time.time() - 5 * 86400, "local", "engineer", EQ, "Start", {}, 1, "ok", "started")
        await wait_for(lambda: s.stats()["records_deleted"]["audit"] == 1, "the writer's own retention", timeout=10)
        assert await s.audit() == []


async def test_retention_runs_on_its_own_in_the_writer(tmp_path, store_cls):
    now = time.time()
    async with store_cls(tmp_path / "store.sqlite", retention_days=1, retention_check_s=0.01) as s:
        s.write_samples([Sample(EQ, "v", 1.0, "", now - 5 * 86400, now - 5 * 86400, Quality.GOOD, "")] * 50
                        + [sample("v", 2.0, now)])
        await s.flush()
        for _ in range(2000):  # polls until the periodic pass has run; the bound only stops a broken store
            if s.stats()["retention_deleted"] == 50:
                break
            await asyncio.sleep(0.01)
        assert s.stats()["retention_deleted"] == 50


# --- queue, back-pressure, lifecycle ---------------------------------------------------------------------

async def test_full_queue_drops_and_counts_while_the_async_path_waits_for_room(tmp_path, caplog):
    # The writer lingers (long commit interval, big batch) so the queue stays as filled until flush().
    s = SqliteStore(tmp_path / "store.sqlite", max_queue=10, batch_rows=1000, commit_interval_s=3600)
    await s.start()
    try:
        s.write_samples([sample("v", float(i), T0 + i) for i in range(10)])
        assert "dropped" not in caplog.text
        s.write_samples([sample("v", 99.0, T0 + 99)])
        assert s.stats()["dropped"] == 1 and s.stats()["queued"] == 10
        assert "1 samples dropped so far, not stored and never forwarded: the write queue is full" in caplog.text
        s.write_samples([sample("v", 98.0, T0 + 98)])
        assert s.stats()["dropped"] == 2 and caplog.text.count("dropped so far") == 1  # one line a minute at most

        waiting = asyncio.create_task(s.write_samples_async([sample("w", 1.0, T0)] * 5))
        await asyncio.sleep(0)
        assert not waiting.done()
        await s.flush()
        await waiting
        await s.flush()
        assert s.stats()["dropped"] == 2
        assert len(await s.history(EQ, "v", T0, T0 + 100)) == 10
        assert len(await s.history(EQ, "w", T0, T0 + 1)) == 5
        assert s.stats()["written"] == 15 and s.stats()["queued"] == 0
    finally:
        await s.close()


async def test_write_samples_says_when_the_queue_is_half_full_and_room_waits_for_the_writer(tmp_path):
    s = SqliteStore(tmp_path / "store.sqlite", max_queue=10, batch_rows=1000, commit_interval_s=3600)
    await s.start()
    try:
        assert s.write_samples([sample("v", float(i), T0 + i) for i in range(5)]) is False  # half: not behind
        assert s.write_samples([sample("v", 5.0, T0 + 5)]) is True
        waiting = asyncio.create_task(s.room())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the writer lingers: the queue stays past half
        await s.flush()
        await asyncio.wait_for(waiting, 5)
        assert s.stats()["queued"] == 0 and s.stats()["dropped"] == 0
    finally:
        await s.close()


async def test_a_producer_that_waits_for_room_loses_nothing_where_one_that_does_not_drops(tmp_path, store_cls):
    async def produce(s: SqliteStore, wait: bool) -> None:
        for k in range(200):
            if s.write_samples([sample("v", float(i), T0 + k * 100 + i) for i in range(100)]) and wait:
                await s.room()

    for wait in (False, True):
        async with store_cls(tmp_path / f"store-{wait}.sqlite", max_queue=1000) as s:
            await produce(s, wait)
            await s.flush()
            stored = len(await s.history(EQ, "v", T0, T0 + 20_000, limit=30_000))
            if wait:
                assert s.stats()["dropped"] == 0 and stored == 20_000
            else:  # a producer that never yields outruns the writer: the full queue drops, counted
                assert s.stats()["dropped"] > 0 and stored == 20_000 - s.stats()["dropped"]


async def test_close_writes_out_everything_queued(tmp_path, store_cls):
    path = tmp_path / "store.sqlite"
    s = store_cls(path, commit_interval_s=3600, batch_rows=10**6, max_batch_rows=1000)
    await s.start()
    for k in range(20):
        s.write_samples([sample(f"p{k}", float(i), T0 + i) for i in range(500)])
    await s.close()
    s.write_samples([sample("late", 1.0, T0)])
    assert s.stats()["dropped"] == 1
    with pytest.raises(StoreClosed):
        await s.record_link(EQ, 1.0, True, "")
    async with store_cls(path) as again:
        _, cursor = await again.read_since(0, 10**6)
        assert cursor == 10_000
        assert len(await again.series()) == 20


async def test_malformed_samples_are_rejected_and_counted_without_stopping_the_store(store):
    good = [sample("v", float(i), T0 + i) for i in range(5)]
    bad = [sample("v", 1.0, float("nan")), Sample(EQ, "v", 1.0, None, T0, T0, Quality.GOOD, ""),  # type: ignore[arg-type]
           Sample(EQ, None, 1.0, "", T0, T0, Quality.GOOD, ""), Sample([EQ], "v", 1.0, "", T0, T0, Quality.GOOD, ""),  # type: ignore[arg-type]
           ("not", "a", "sample")]
    store.write_samples(good[:2] + bad + good[2:])  # type: ignore[operator]
    await store.flush()
    assert [r["value"] for r in await store.history(EQ, "v", T0, T0 + 10)] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert store.stats()["rejected"] == 5 and store.stats()["written"] == 5
    store.write_samples([sample("v", 5.0, T0 + 5), sample("v", [1, 2], T0 + 6), (EQ, "t", 1, "", T0, T0, 0, "")])
    await store.flush()
    assert [r["value"] for r in await store.history(EQ, "v", T0 + 5, T0 + 10)] == [5.0, "[1, 2]"]
    assert await store.history(EQ, "v", -math.inf, math.inf, limit=3) != []
    assert [s.value for s in await store.latest(EQ) if s.path == "t"] == [1]  # a plain tuple is stored as a Sample


# --- disk budget ---------------------------------------------------------------------------------------------

async def test_disk_budget_deletes_the_oldest_and_counts_exactly_what_each_consumer_lost(tmp_path, store_cls, caplog):
    path = tmp_path / "store.sqlite"
    n, chunk = 120_000, 2_000
    async with store_cls(path, max_disk_mb=1, budget_check_s=0) as s:
        await s.register_consumer("slow")  # never reads
        await s.register_consumer("fast")
        for i in range(0, n, chunk):
            s.write_samples([sample(f"v{j % 50}", float(i + j), T0 + i + j) for j in range(chunk)])
            await s.flush()
            if i < n // 2:  # "fast" keeps up for the first half, then its sink goes away
                _, fast_cursor = await s.read_since(0, 10**9)
                await s.set_cursor("fast", fast_cursor)
        st = s.stats()
        assert st["budget_deleted"] > 0
        assert os.path.getsize(path) < 3 * 2**20  # pages freed at the head are reused, the file stays near budget
        left, _ = await s.read_since(0, 10**9)
        first_kept = left[0][0]
        lost = await s.discards()
        # Everything written is either still there or counted as lost to the consumer that never read it.
        assert lost["slow"] + len(left) == n
        assert [seq for seq, _ in left] == list(range(first_kept, first_kept + len(left)))  # only the head went
        assert left[-1][0] == n and float(n - 1) in {x.value for _, x in left}  # the newest stayed
        assert lost["fast"] == first_kept - 1 - fast_cursor
        assert st["budget_unforwarded"] == lost["slow"] + lost["fast"]
        assert await s.discards(since=time.time() - 600) == lost and await s.discards(since=time.time() + 1) == {}
    assert "disk budget of 1.0 MB exhausted" in caplog.text and "never forwarded" in caplog.text
    async with store_cls(path) as s:
        assert await s.discards() == lost  # the count survives a restart


async def test_disk_budget_spares_everything_while_under_it(tmp_path, store_cls):
    async with store_cls(tmp_path / "store.sqlite", max_disk_mb=50, budget_check_s=0) as s:
        await s.register_consumer("slow")
        s.write_samples([sample("v", float(i), T0 + i) for i in range(10_000)])
        await s.flush()
        assert s.stats()["budget_deleted"] == 0 and await s.discards() == {}
        assert len((await s.read_since(0, 10**9))[0]) == 10_000


# --- layouts and compaction ----------------------------------------------------------------------------------

