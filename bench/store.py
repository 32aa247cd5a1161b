"""The embedded store under the load the gateway really gives it, and what it keeps on disk.

Every figure is taken --runs times (3 by default) and reported as min/median/max;
the results go to bench/results/store.json, from which `bench/report.py` writes
the README table.

1. Line write: formation racks scanned over Modbus every second (the
   simulators' own data, bench/linedata.py: 8,748 values per rack per scan), each
   scan's list handed to `write_samples` as the device does, at the scan rate,
   for --seconds. The writer commits what gathers meanwhile, as in the gateway
   (a few thousand samples per commit, not 100,000). Nothing is due for sealing
   within a run (windows are 10 minutes): this is the write path; sealing is
   measured in 4., on a real 10-minute window, and added. Reports the values/s
   kept up with, the process CPU per value, the commit sizes, the queue's
   high-water mark. (Sealing windows of 20 s inside the run would cost ~7 us a
   value: a chunk's fixed cost over 20 values instead of 600.)
2. The same write, unpaced (lists of one scan each, as fast as the store takes
   them): the most the store can take, with the commits the writer then makes.
3. Write rate as the store grows: the paced write of 1., once on an empty store
   and once on a store already holding a simulated day of --day-racks racks (its
   chunks made from a real 10-minute window of rack data, repeated over the day
   with their times moved, so that the file and its indexes are a day's size).
4. Bytes per value on disk after sealing, per class: a 512-channel formation
   rack (Modbus, every value every second, 10 minutes), a coater and a winder
   (OPC UA, changes only, an hour each), each sealed as one window; the chunks'
   pages and the whole file's; and the sealing's CPU per value. Then as much
   again, sealed the same way: the chunk bytes per value that second span adds
   (the first span also carries a small store's fixed pages). `--only classes`
   runs this part alone.
5. History: a day of one variable at 10 Hz in 1-minute buckets (avg, min, max,
   last); the last hour of 512 channels' voltage, raw, one query per channel,
   as rows (`history`, a dict per sample) and as columns (`history_columns`).
   `--only history` runs this part alone and replaces it in the results file.

Run: .venv/bin/python bench/store.py [--runs 3] [--racks 4] [--seconds 60] [--day-racks 1] [--dir DIR] [--only history|classes]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import spread
from bench.linedata import scans
from gateway.samples import Quality, Sample
from gateway.store import (
    SqliteStore,
    codec,
)
from gateway.store.sqlite.schema import INSERT_CHUNK, chunk_rows

RESULTS = Path(__file__).resolve().parent / "results"
DAY = 86400
RACK_WINDOW_S = 600


def rack_scans(racks: int, seconds: int, t0: float) -> list[list[list[Sample]]]:
    """Per second, one list per rack: the simulator's rack data, renamed per rack (rack1, rack2, ...)."""
    base = list(scans("formation", t0, seconds))
    return [[[s._replace(equipment=f"rack{r + 1}") for s in lst] for r in range(racks)] for lst in base]


def used_bytes(path: Path, table: str | None = None) -> int:
    conn = sqlite3.connect(path)
    try:
        if table is None:
            size, pages, free = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count",
                                                                                      "freelist_count"))
            return (pages - free) * size
        return conn.execute("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = ? OR name LIKE ?",
                            (table, f"{table}_%")).fetchone()[0]
    finally:
        conn.close()


async def line_write(path: Path, per_second: list[list[list[Sample]]], paced: bool) -> dict[str, Any]:
    """Write the scans (paced: one second each, in real time) and measure the store's cost per value."""
    # Nothing is sealed within a run (a window takes 10 minutes, or this many rows): the write path alone,
    # and every run on the day's store starts from the same head.
    store = SqliteStore(path, seal_rows=10**9)
    await store.start()
    total = sum(len(lst) for second in per_second for lst in second)
    high = 0
    behind = 0
    gc.collect()
    cpu0, w0 = time.process_time(), time.perf_counter()
    b0 = store.stats()["batches"]
    for k, second in enumerate(per_second):
        for r, lst in enumerate(second):
            if paced:
                # Each rack scans on its own phase within the second, as independent devices do.
                await asyncio.sleep(max(0.0, w0 + k + r / len(second) - time.perf_counter()))
                if store.write_samples(lst):
                    behind += 1
                    await store.room()  # as the adapters do
            else:
                await store.write_samples_async(lst)
            high = max(high, store.stats()["queued"])
    if paced:
        await asyncio.sleep(max(0.0, w0 + len(per_second) - time.perf_counter()))
    await store.flush()
    elapsed = time.perf_counter() - w0
    cpu = time.process_time() - cpu0
    st = store.stats()
    await store.close()
    commits = st["batches"] - b0
    return {
        "values": total, "series": st["series"], "seconds": elapsed, "values_per_s": total / elapsed, "cpu_us_per_value": cpu / total * 1e6,
        "commits": commits, "values_per_commit": total / max(1, commits), "queue_high_water": high,
        "waits_for_room": behind, "dropped": st["dropped"], "sealed": st["sealed_samples"],
        "compact_errors": st["compact_errors"],
    }


async def fill_day(path: Path, racks: int, t0: float) -> dict[str, Any]:
    """A day of `racks` racks as sealed chunks, made from one real 10-minute window moved over the day."""
    window = rack_scans(1, RACK_WINDOW_S, t0)
    per_series: dict[str, list[Sample]] = {}
    for second in window:
        for s in second[0]:
            per_series.setdefault(s.path, []).append(s)
    store = SqliteStore(path)
    await store.start()
    # Create the series the way the gateway does (and the head holding the first window).
    for r in range(racks):
        for second in window[:1]:
            await store.write_samples_async([s._replace(equipment=f"rack{r + 1}") for s in second[0]])
    await store.flush()
    await store.close()
    conn = sqlite3.connect(path)
    sids = {(eq, p): sid for sid, eq, p in conn.execute("SELECT id, equipment, path FROM series")}
    blobs: dict[str, list[tuple]] = {}
    for path_, rows in per_series.items():
        values = [s.value for s in rows]
        texts = [v if isinstance(v, str) else None for v in values]
        nums = [None if isinstance(v, str) else (int(v) if isinstance(v, bool) else v) for v in values]
        c = codec.columns([s.source_ts for s in rows], [s.gateway_ts for s in rows], nums, texts,
                          [4 if isinstance(v, bool) else 0 for v in values], [""] * len(rows))
        blobs[path_] = chunk_rows(0, 0, c)
    w0 = time.perf_counter()
    values = 0
    for w in range(DAY // RACK_WINDOW_S):
        shift = w * RACK_WINDOW_S - DAY
        conn.execute("BEGIN")
        for r in range(racks):
            for path_, rows in blobs.items():
                sid = sids[(f"rack{r + 1}", path_)]
                for row in rows:
                    moved = (sid, 0, row[2] + shift, row[3] + shift, row[4] + shift, row[5] + shift, *row[6:])
                    conn.execute(INSERT_CHUNK, moved)
                    values += row[6]
        conn.execute("COMMIT")
    conn.close()
    return {"racks": racks, "values": values, "seconds": time.perf_counter() - w0,
            "file_bytes": os.path.getsize(path), "bytes_per_value": used_bytes(path) / values}


async def bytes_per_class(tmp: Path, t0: float) -> dict[str, Any]:
    out = {}
    for cls, seconds in (("formation", RACK_WINDOW_S), ("coater", 3600), ("winder", 3600)):
        path = tmp / f"class-{cls}.sqlite"
        # Sealed in one window, as the compactor would seal it in operation (every seal_span_s); then a second
        # span, sealed the same way: what it adds is a span's cost once the store holds data (a short store's
        # fixed pages, its indexes' first pages mostly empty, are spread over the first span's values only).
        async with SqliteStore(path, seal_after_s=0, seal_span_s=0, seal_rows=10**8, compact_check_s=3600) as store:
            n, spans = 0, []
            for lst in scans(cls, t0, 2 * seconds):
                if lst and lst[0].gateway_ts >= t0 + seconds and not spans:
                    spans.append(await _seal(store, path, n))
                n += len(lst)
                await store.write_samples_async(lst)
            spans.append(await _seal(store, path, n))
            st = store.stats()
        first, both = spans
        out[cls] = {"values": first["values"], "seconds": seconds, "series": st["series"],
                    "sealed": first["values"],
                    "compaction_us_per_value": first["compact_cpu_s"] / first["values"] * 1e6,
                    "chunk_bytes_per_value": first["chunk_bytes"] / first["values"],
                    "file_bytes_per_value": first["file_bytes"] / first["values"],
                    # the second span: the chunk bytes it added over the values it added
                    "next_span_chunk_bytes_per_value": (both["chunk_bytes"] - first["chunk_bytes"])
                    / (both["values"] - first["values"])}
    return out


async def _seal(store: SqliteStore, path: Path, values: int) -> dict[str, Any]:
    """Everything written so far sealed; the chunks' and the file's bytes then (through a reader of the WAL)."""
    await store.flush()
    c0 = time.process_time()
    await store.compact()
    return {"values": values, "compact_cpu_s": time.process_time() - c0, "chunk_bytes": used_bytes(path, "chunks"),
            "file_bytes": used_bytes(path)}


async def history_queries(path: Path, runs: int) -> dict[str, Any]:
    now = time.time()
    day0 = now - DAY
    async with SqliteStore(path, seal_after_s=0, seal_span_s=0) as store:
        for minute in range(DAY // 60):
            base = day0 + minute * 60
            await store.write_samples_async([
                Sample("coater1", "web.line_speed", round(30.0 + (i % 600) * 0.01, 2), "m/min", base + i * 0.1,
                       base + i * 0.1 + 0.002, Quality.GOOD if i % 1000 else Quality.BAD, "") for i in range(600)])
        for s in range(3600):
            ts = now - 3600 + s
            await store.write_samples_async([
                Sample("rack1", f"channel[{c + 1}].voltage", round(3.6 + 0.0001 * s + (c % 7) * 0.001, 4), "V", ts, ts,
                       Quality.GOOD, "") for c in range(512)])
        await store.flush()
        await store.compact()

        async def timed(fn: Callable[[], Any]) -> tuple[list[float], Any]:
            times, result = [], None
            for _ in range(runs):
                q0 = time.perf_counter()
                result = await fn()
                times.append((time.perf_counter() - q0) * 1000)
            return times, result

        day, rows = await timed(lambda: store.history("coater1", "web.line_speed", day0, day0 + DAY, bucket_s=60,
                                                      agg=["avg", "min", "max", "last"], limit=100_000))

        async def hour() -> int:
            got = 0
            for c in range(512):
                got += len(await store.history("rack1", f"channel[{c + 1}].voltage", now - 3600, now + 1,
                                               limit=100_000))
            return got

        hour_ms, hour_rows = await timed(hour)

        async def hour_columns() -> int:
            got = 0
            for c in range(512):
                got += len((await store.history_columns("rack1", f"channel[{c + 1}].voltage", now - 3600, now + 1,
                                                        limit=100_000)).ts)
            return got

        hour_c_ms, hour_c_rows = await timed(hour_columns)
        assert hour_c_rows == hour_rows, (hour_c_rows, hour_rows)

        async def hour_buckets() -> int:
            got = 0
            for c in range(512):
                got += len(await store.history("rack1", f"channel[{c + 1}].voltage", now - 3600, now + 1,
                                               bucket_s=60, agg=["avg", "min", "max"]))
            return got

        hour_b_ms, hour_b_rows = await timed(hour_buckets)
    return {"day_10hz_1min_buckets_ms": spread(day), "day_buckets": len(rows),
            "hour_512_channels_raw_ms": spread(hour_ms), "hour_rows": hour_rows,
            "hour_512_channels_columns_ms": spread(hour_c_ms),
            "hour_512_channels_1min_buckets_ms": spread(hour_b_ms), "hour_bucket_rows": hour_b_rows}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--racks", type=int, default=4, help="formation racks of 512 channels in the line write")
    ap.add_argument("--seconds", type=int, default=60, help="seconds of line write per run")
    ap.add_argument("--day-racks", type=int, default=1, help="racks in the simulated day of step 3")
    ap.add_argument("--dir", type=Path, default=None, help="where to put the databases (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=RESULTS / "store.json")
    ap.add_argument("--only", choices=["history", "classes"],
                    help="run the history queries (5.) or the bytes per class (4.) alone; the rest of --out is kept")
    args = ap.parse_args()
    if args.only == "history":
        await history_alone(args)
        return
    if args.only == "classes":
        await classes_alone(args)
        return
    t0 = time.time() - 3600
    print(f"generating {args.seconds} s of {args.racks} racks' scans from the formation simulator ...", flush=True)
    data = rack_scans(args.racks, args.seconds, t0)
    gc.freeze()  # the pre-generated samples stand for a producer's short-lived objects
    result: dict[str, Any] = {
        "script": "store.py", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
                    "load_average_at_start": os.getloadavg()},
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp_s:
        tmp = Path(tmp_s)
        paced, unpaced, grown = [], [], []
        for run in range(args.runs):
            paced.append(await line_write(tmp / f"paced{run}.sqlite", data, paced=True))
            unpaced.append(await line_write(tmp / f"unpaced{run}.sqlite", data, paced=False))
            p, u = paced[-1], unpaced[-1]
            print(f"run {run + 1}: paced {p['values_per_s']:,.0f} values/s at {p['cpu_us_per_value']:.2f} us CPU/value "
                  f"({p['values_per_commit']:,.0f} per commit, queue high-water {p['queue_high_water']:,}, "
                  f"{p['waits_for_room']} waits); unpaced {u['values_per_s']:,.0f} values/s "
                  f"({u['values_per_commit']:,.0f} per commit)", flush=True)
        print(f"filling a simulated day of {args.day_racks} rack(s) ...", flush=True)
        day_path = tmp / "day.sqlite"
        day = await fill_day(day_path, args.day_racks, t0 - DAY)
        print(f"  {day['values']:,} values, {day['file_bytes'] / 2**30:.2f} GB, "
              f"{day['bytes_per_value']:.2f} bytes/value, in {day['seconds']:.0f} s", flush=True)
        for run in range(args.runs):
            grown.append(await line_write(day_path, data, paced=True))
            print(f"run {run + 1} on the day: {grown[-1]['cpu_us_per_value']:.2f} us CPU/value", flush=True)
        print("bytes per value per class ...", flush=True)
        classes = await bytes_per_class(tmp, t0 - 7200)  # two spans, ending an hour ago
        print_classes(classes)
        print("history queries ...", flush=True)
        hist = await history_queries(tmp / "history.sqlite", max(args.runs, 5))
    result.update({
        "line_write_paced": {"runs": paced, "values_per_s": spread([r["values_per_s"] for r in paced]),
                             "cpu_us_per_value": spread([r["cpu_us_per_value"] for r in paced]),
                             "values_per_commit": spread([r["values_per_commit"] for r in paced])},
        "line_write_unpaced": {"runs": unpaced, "values_per_s": spread([r["values_per_s"] for r in unpaced]),
                               "values_per_commit": spread([r["values_per_commit"] for r in unpaced])},
        "day": day,
        "line_write_on_a_day": {"runs": grown, "cpu_us_per_value": spread([r["cpu_us_per_value"] for r in grown])},
        "bytes_per_value": classes,
        "history": hist,
    })
    e, g = result["line_write_paced"]["cpu_us_per_value"]["median"], result["line_write_on_a_day"]["cpu_us_per_value"]["median"]
    result["cpu_per_value_day_vs_empty"] = g / e
    add_write_and_seal(result)
    print(f"CPU per value on a day's store / on an empty one: {g / e:.2f}")
    print_history(hist)
    result["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"results in {args.out}")


async def history_alone(args: argparse.Namespace) -> None:
    """Step 5 alone, its figures put in place of the results file's own (with when they were taken)."""
    result = json.loads(args.out.read_text())
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        hist = await history_queries(Path(tmp) / "history.sqlite", max(args.runs, 5))
    hist["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    hist["load_average_at_start"] = load
    result["history"] = hist
    print_history(hist)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"history results in {args.out}")


async def classes_alone(args: argparse.Namespace) -> None:
    """Step 4 alone, its figures put in place of the results file's own (with when they were taken)."""
    result = json.loads(args.out.read_text())
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        classes = await bytes_per_class(Path(tmp), time.time() - 3 * 3600)
    result["bytes_per_value"] = classes
    result["bytes_per_value_when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    add_write_and_seal(result)
    print_classes(classes)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"bytes per class in {args.out}")


def add_write_and_seal(result: dict[str, Any]) -> None:
    """A value's whole store CPU: the paced write's median, plus sealing a formation rack's window."""
    result["write_and_seal_cpu_us_per_value"] = (result["line_write_paced"]["cpu_us_per_value"]["median"]
                                                 + result["bytes_per_value"]["formation"]["compaction_us_per_value"])


def print_classes(classes: dict[str, Any]) -> None:
    for cls, c in classes.items():
        print(f"  {cls}: {c['chunk_bytes_per_value']:.2f} bytes/value in chunks ({c['next_span_chunk_bytes_per_value']:.2f} "
              f"for a second span), {c['file_bytes_per_value']:.2f} in the whole file ({c['values']:,} values, "
              f"{c['series']} series); sealing {c['compaction_us_per_value']:.2f} us CPU/value", flush=True)


def print_history(h: dict[str, Any]) -> None:
    print(f"a day at 10 Hz in 1-minute buckets: median {h['day_10hz_1min_buckets_ms']['median']:.1f} ms "
          f"({h['day_buckets']} buckets); last hour of 512 channels raw: median "
          f"{h['hour_512_channels_raw_ms']['median']:.0f} ms ({h['hour_rows']:,} rows), in 1-minute buckets "
          f"{h['hour_512_channels_1min_buckets_ms']['median']:.0f} ms; as columns "
          f"{h['hour_512_channels_columns_ms']['median']:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
