"""The quality feature table for --cells graded cells (10,000 by default), computed from the embedded store.

The store is filled as the gateway would fill it for a line that made those cells: a coater making electrode rolls
(one hour each, cathode and anode in turn, four lane and two dryer values every 5 s), a winder making one jelly roll
a minute from a cathode and an anode roll (both tensions every 2 s), formation racks grading trays of 512 cells
(each channel's cell id at loading, voltage and temperature every 100 s over the 5,000 s of the tray), with the
UnitProcessed, JobStarted and MaterialConsumed events that link them. Then, --runs times: the whole table
(FeatureTable.rows) and its Parquet file. Reports min/median/max seconds and writes bench/results/features.json.

Run: .venv/bin/python bench/features.py [--cells 10000] [--runs 3] [--dir DIR [--reuse]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.analytics.features import FeatureTable, to_parquet
from gateway.runtime.device import event_ids
from gateway.samples import Quality, Sample
from gateway.store import SqliteStore
from interface_spec import load_spec

T0 = 1_764_547_200.0
TRAY = 512
ROLL_S, JR_S, TRAY_S = 3600.0, 60.0, 5000.0
JELLY_ROLLS_PER_ROLL = 1000
MACHINES = {"coater1": "coater", "winder1": "winder", "formation1": "formation"}
SPEC = load_spec()
BATCH = 20_000


class Filler:
    def __init__(self, store: SqliteStore):
        self.store, self.seq, self.batch, self.written = store, 0, [], 0

    async def sample(self, eq: str, path: str, t: float, value: object) -> None:
        self.batch.append(Sample(eq, path, value, "", t, t, Quality.GOOD, ""))
        if len(self.batch) >= BATCH:
            await self.flush()

    async def flush(self) -> None:
        if self.batch:
            await self.store.write_samples_async(self.batch)
            self.written += len(self.batch)
            self.batch = []

    async def event(self, eq: str, kind: str, t: float, payload: dict) -> None:
        self.seq += 1
        await self.store.record_event(eq, kind, t, self.seq, payload, ids=event_ids(payload))


async def fill(store: SqliteStore, cells: int) -> int:
    f = Filler(store)
    rolls = 2 * -(-cells // JELLY_ROLLS_PER_ROLL)
    await f.event("coater1", "JobStarted", T0, {"job_id": "C"})
    for r in range(rolls):
        start = T0 + r * ROLL_S
        for k in range(int(ROLL_S / 5)):
            t = start + (k + 1) * 5
            for lane in (1, 2):
                await f.sample("coater1", f"lane[{lane}].areal_weight", t, 18.0 + (r % 2) + 0.01 * (k % 7))
                await f.sample("coater1", f"lane[{lane}].dry_thickness", t, 70.0 + 0.1 * (k % 5))
            for zone in (1, 2):
                await f.sample("coater1", f"dryer_zone[{zone}].air_temperature", t, 110.0 + zone)
        await f.event("coater1", "UnitProcessed", start + ROLL_S, {
            "unit_type": "electrode_roll", "unit_id": f"E{r}", "result": "good", "made_from": [f"FOIL-{r}"]})
    w0 = T0 + rolls * ROLL_S
    await f.event("winder1", "JobStarted", w0, {"job_id": "W"})
    for j in range(cells):
        end = w0 + (j + 1) * JR_S
        for k in range(int(JR_S / 2)):
            t = end - JR_S + (k + 1) * 2
            await f.sample("winder1", "tension.cathode", t, 10.0 + (j % 10) * 0.1 + 0.01 * k)
            await f.sample("winder1", "tension.anode", t, 9.0 + (j % 7) * 0.1)
        pair = 2 * (j // JELLY_ROLLS_PER_ROLL)
        await f.event("winder1", "UnitProcessed", end, {
            "unit_type": "jelly_roll", "unit_id": f"J{j}", "result": "good", "made_from": [f"E{pair}", f"E{pair + 1}"]})
    f0 = w0 + cells * JR_S + 60
    grades = SPEC.enum("cell_grade")
    for tray in range(-(-cells // TRAY)):
        load = f0 + tray * (TRAY_S + 100)
        members = range(tray * TRAY, min(cells, (tray + 1) * TRAY))
        for ch, j in enumerate(members, start=1):
            await f.event("formation1", "MaterialConsumed", load, {"material_type": "jelly_roll", "material_id": f"J{j}"})
            await f.sample("formation1", f"channel[{ch}].cell_id", load, f"Z{j}")
            for k in range(int(TRAY_S / 100)):
                t = load + (k + 1) * 100
                await f.sample("formation1", f"channel[{ch}].voltage", t, 3.0 + k * 0.02 + ch * 1e-4)
                await f.sample("formation1", f"channel[{ch}].temperature", t, 25.0 + (k % 3))
            await f.sample("formation1", f"channel[{ch}].result_grade", load + TRAY_S + 1, grades["A" if j % 9 else "B"])
        for j in members:
            await f.event("formation1", "UnitProcessed", load + TRAY_S, {
                "unit_type": "cell", "unit_id": f"Z{j}", "result": "good", "made_from": [f"J{j}"],
                "measurements": {"ocv": 3.6 + 1e-5 * j, "dcir": 12.0 + (j % 5)}})
    await f.flush()
    await store.flush()
    return f.written


async def main(args: argparse.Namespace) -> dict:
    folder = Path(args.dir or tempfile.mkdtemp(prefix="linegw-features-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "features.sqlite"
    reuse = args.reuse and path.exists()
    async with SqliteStore(path) as store:
        written, fill_s = 0, 0.0
        if not reuse:
            t = time.perf_counter()
            written = await fill(store, args.cells)
            fill_s = time.perf_counter() - t
        table_s, parquet_s, rows, cols, size = [], [], 0, 0, 0
        for _ in range(args.runs):
            t = time.perf_counter()
            found, columns = await FeatureTable(store, SPEC, MACHINES).rows(T0, T0 + 10 * 365 * 86400)
            table_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            data = to_parquet(found, columns, {"bench": "features"})
            parquet_s.append(time.perf_counter() - t)
            rows, cols, size = len(found), len(columns), len(data)
    def stats(xs: list[float]) -> dict[str, float]:
        return {"min": round(min(xs), 3), "median": round(statistics.median(xs), 3), "max": round(max(xs), 3)}
    return {"bench": "features", "machine": platform.machine(), "python": platform.python_version(),
            "cells": rows, "columns": cols, "samples_written": written, "fill_s": round(fill_s, 1),
            "table_s": stats(table_s), "ms_per_cell_median": round(1000 * statistics.median(table_s) / max(rows, 1), 3),
            "parquet_s": stats(parquet_s), "parquet_bytes": size, "runs": args.runs}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--dir", help="where the store is (kept); default a temporary folder")
    p.add_argument("--reuse", action="store_true", help="use the store already in --dir instead of filling it")
    res = asyncio.run(main(p.parse_args()))
    print(json.dumps(res, indent=1))
    out = Path(__file__).resolve().parent / "results" / "features.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
