"""The quality feature table on the scripted line of test_record.py, in a real SqliteStore.

Each cell's row must hold the statistics of its own units' windows (its jelly roll's, its electrode rolls', its
channel's), checked against the raw history; Parquet and CSV carry the documented columns and units.
"""

from __future__ import annotations

import io
import math

import pyarrow.parquet as pq
import pytest

from gateway.analytics.features import CELL_COLUMNS, FeatureTable, to_csv, to_parquet
from gateway.samples import Quality, Sample
from gateway.store import SqliteStore
from tests.analytics.script import SPEC
from tests.analytics.test_record import FORM_END, FORM_START, JR_END, MACHINES, T0, build

GRADES = SPEC.enum("cell_grade")


@pytest.fixture
async def store(tmp_path):
    async with SqliteStore(tmp_path / "line.sqlite") as s:
        await build(s)
        # Each channel shows its cell's grade a second after the tray is graded.
        await s.write_samples_async([Sample("formation1", f"channel[{ch}].result_grade", GRADES[g], "", FORM_END + 1,
                                            FORM_END + 1, Quality.GOOD, "") for ch, g in ((1, "A"), (2, "NG"))])
        await s.flush()
        yield s


async def raw_mean(store, eq: str, path: str, start: float, end: float) -> tuple[float, float, float, int]:
    rows = await store.history(eq, path, math.nextafter(start, math.inf), math.nextafter(end, math.inf))
    values = [r["value"] for r in rows]
    return sum(values) / len(values), min(values), max(values), len(values)


async def test_each_cells_row_holds_its_own_units_windows(store):
    rows, columns = await FeatureTable(store, SPEC, MACHINES).rows(T0, T0 + 2000)
    assert [r["cell_id"] for r in rows] == ["CL-1", "CL-2"]
    one, two = rows
    assert (one["grade"], two["grade"]) == ("A", "NG") and (one["result"], two["result"]) == ("good", "reject")
    assert two["formation.dcir"] == 14.0 and two["winder.unit_id"] == "JR-2"
    # The jelly roll's window: JR-2 from JR-1's end, not JR-1's or JR-3's tension.
    mean, lo, hi, n = await raw_mean(store, "winder1", "tension.cathode", JR_END["JR-1"], JR_END["JR-2"])
    assert (two["winder.tension.cathode.mean"], two["winder.tension.cathode.min"],
            two["winder.tension.cathode.max"], two["winder.tension.cathode.n"]) == pytest.approx((mean, lo, hi, n))
    assert 20.0 <= lo and hi < 21.0
    assert 10.0 <= one["winder.tension.cathode.min"] and one["winder.tension.cathode.max"] < 11.0
    # The electrode rolls: the cathode roll first (as made_from lists it), each its own window.
    assert (two["coater_1.unit_id"], two["coater_2.unit_id"]) == ("EC-1", "EA-1")
    assert two["coater_1.lane[1].areal_weight.max"] == 18.0 and two["coater_2.lane[1].areal_weight.min"] == 9.0
    # The formation channel: the cell's own (channel 2), not the tray's other cell.
    mean, *_ = await raw_mean(store, "formation1", "channel[2].voltage", FORM_START, FORM_END)
    assert two["formation.channel.voltage.mean"] == pytest.approx(mean)
    assert one["formation.channel.voltage.mean"] < two["formation.channel.voltage.mean"]
    names = [c.name for c in columns]
    assert names[:len(CELL_COLUMNS)] == [c.name for c in CELL_COLUMNS] and len(names) == len(set(names))
    assert names.index("formation.channel.voltage.mean") < names.index("winder.tension.cathode.mean") \
        < names.index("coater_1.lane[1].areal_weight.mean") < names.index("coater_2.lane[1].areal_weight.mean")


async def test_parquet_and_csv_carry_the_documented_schema(store):
    rows, columns = await FeatureTable(store, SPEC, MACHINES).rows(T0, T0 + 2000)
    table = pq.read_table(io.BytesIO(to_parquet(rows, columns, {"range": "scripted"})))
    assert table.num_rows == 2 and table.column_names == [c.name for c in columns]
    field = table.schema.field("winder.tension.cathode.mean")
    assert str(field.type) == "double" and field.metadata[b"unit"] == b"N"
    assert table.schema.field("formation.dcir").metadata[b"unit"] == b"mOhm"
    assert str(table.schema.field("winder.tension.cathode.n").type) == "int64"
    assert str(table.schema.field("graded_time").type) == "timestamp[us, tz=UTC]"
    assert table.schema.metadata[b"range"] == b"scripted"
    assert table.column("cell_id").to_pylist() == ["CL-1", "CL-2"]
    text = to_csv(rows, columns).splitlines()
    assert text[0].split(",")[:3] == ["cell_id", "equipment", "graded_time"] and len(text) == 3
    assert text[2].startswith("CL-2,formation1,") and "NG" in text[2]
