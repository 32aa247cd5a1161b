"""Speed of the embedded store, measured against its design targets.

1. Write rate: samples/s through `write_samples_async` (so nothing is dropped)
   for 1,000 series in scan-sized lists, while history queries run on the same
   event loop (their SQL runs in reader threads): two loops alternating a raw
   query (last 10 s of a random series) and a bucketed one (60 s buckets since
   the start), paced at each of --query-rates per second in all (0: back to back).
   Back to back, the query threads and the writer share one GIL and two cores,
   so the split between them (and the write rate) varies from run to run.
   Target: 300,000 samples/s.
2. Downsampling: a day of one series at 10 Hz (864,000 rows, among other series)
   in 60 s buckets, through the rollup cells. Target: under 50 ms. For contrast,
   the same day in 59 s buckets, which must aggregate the raw rows.

Run: .venv/bin/python bench/store.py [--samples N] [--query-rates 50,500,0] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.samples import Quality, Sample  # noqa: E402
from gateway.store import SqliteStore  # noqa: E402

SERIES = 1000
MACHINES = 10
DAY = 86400


def scans(total: int, t0: float) -> list[list[Sample]]:
    """`total` samples as lists of one scan each: every series once per 100 ms step."""
    names = [(f"m{j % MACHINES}", f"zone[{j // MACHINES + 1}].temperature") for j in range(SERIES)]
    out = []
    for step in range(total // SERIES):
        ts = t0 + step * 0.1
        for m in range(MACHINES):
            out.append([Sample(eq, path, 20.0 + (step + j) % 50 * 0.1, "Cel", ts, ts, Quality.GOOD, "")
                        for j, (eq, path) in enumerate(names) if j % MACHINES == m])
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


async def write_rate(path: Path, lists: list[list[Sample]], t0: float, query_rate: float) -> dict[str, float]:
    total = sum(map(len, lists))
    store = SqliteStore(path)
    await store.start()
    stop = asyncio.Event()
    latencies: list[float] = []

    async def queries(seed: int) -> None:
        rnd = random.Random(seed)
        period = 2 / query_rate if query_rate > 0 else 0.0
        next_at = time.perf_counter()
        while not stop.is_set():
            if period:
                next_at += period
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            j = rnd.randrange(SERIES)
            eq, p = f"m{j % MACHINES}", f"zone[{j // MACHINES + 1}].temperature"
            now_data = t0 + store.stats()["written"] / SERIES * 0.1
            q0 = time.perf_counter()
            if rnd.random() < 0.5:
                await store.history(eq, p, now_data - 10, now_data, limit=100_000)
            else:
                await store.history(eq, p, t0, now_data, bucket_s=60, agg=["avg", "min", "max", "last"])
            latencies.append(time.perf_counter() - q0)

    readers = [asyncio.create_task(queries(seed)) for seed in range(2)]
    w0 = time.perf_counter()
    for lst in lists:
        await store.write_samples_async(lst)
    await store.flush()
    elapsed = time.perf_counter() - w0
    stop.set()
    await asyncio.gather(*readers)
    st = store.stats()
    await store.close()
    return {
        "samples": total, "seconds": elapsed, "rate": total / elapsed, "batches": st["batches"],
        "dropped": st["dropped"], "queries": len(latencies),
        "query_p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "query_p95_ms": pct(latencies, 0.95) * 1000 if latencies else float("nan"),
        "bytes_per_sample": os.path.getsize(path) / total,
    }


async def downsample(path: Path, runs: int = 20) -> dict[str, float]:
    day0 = float(int(time.time() // DAY - 2) * DAY) + 1234.5  # a day ending two days ago, not aligned
    others = 99
    store = SqliteStore(path)
    await store.start()
    print(f"writing a day of one series at 10 Hz (864,000 rows) and {others} series at 0.1 Hz ...", flush=True)
    w0 = time.perf_counter()
    for minute in range(DAY // 60):
        base = day0 + minute * 60
        batch = [Sample("coater1", "web.line_speed", 30.0 + (i % 600) * 0.01, "m/min", base + i * 0.1,
                        base + i * 0.1 + 0.002, Quality.GOOD if i % 1000 else Quality.BAD, "")
                 for i in range(600)]
        batch += [Sample(f"m{k % MACHINES}", f"x[{k}].value", float(k), "1", base + s, base + s, Quality.GOOD, "")
                  for k in range(others) for s in range(0, 60, 10)]
        await store.write_samples_async(batch)
    await store.flush()
    setup = time.perf_counter() - w0
    start, end = day0, day0 + DAY

    async def timed(bucket: float, n: int) -> tuple[list[float], int]:
        times, rows = [], 0
        for _ in range(n):
            q0 = time.perf_counter()
            rows = len(await store.history("coater1", "web.line_speed", start, end, bucket_s=bucket,
                                           agg=["avg", "min", "max", "last"], limit=100_000))
            times.append(time.perf_counter() - q0)
        return times, rows

    roll, roll_rows = await timed(60.0, runs)
    raw, raw_rows = await timed(59.0, 3)
    q0 = time.perf_counter()
    hour = await store.history("coater1", "web.line_speed", start, start + 3600, limit=100_000)
    hour_ms = (time.perf_counter() - q0) * 1000
    await store.close()
    return {
        "setup_s": setup, "buckets": roll_rows, "first_ms": roll[0] * 1000, "median_ms": statistics.median(roll) * 1000,
        "p95_ms": pct(roll, 0.95) * 1000, "raw_buckets": raw_rows, "raw_median_ms": statistics.median(raw) * 1000,
        "raw_hour_rows": len(hour), "raw_hour_ms": hour_ms,
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=3_000_000, help="samples to write in the write-rate run")
    ap.add_argument("--query-rates", default="50,500,0",
                    help="history queries per second during the write runs, comma-separated; 0: back to back")
    ap.add_argument("--dir", type=Path, default=None, help="where to put the databases (default: a temp dir)")
    args = ap.parse_args()
    t0 = time.time() - 3600
    print(f"generating {args.samples:,} samples ...", flush=True)
    lists = scans(args.samples, t0)
    # The pre-generated samples stand for a producer's short-lived objects: frozen, the
    # cyclic GC does not count them as the long-lived heap they only are here.
    gc.freeze()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n, rate in enumerate(float(r) for r in args.query_rates.split(",")):
            label = f"{rate:g} history queries/s" if rate else "history queries back to back"
            w = await write_rate(Path(tmp) / f"write{n}.sqlite", lists, t0, rate)
            print(f"write rate with {label}: {w['rate']:,.0f} samples/s ({w['samples']:,} samples in "
                  f"{w['seconds']:.2f} s, {w['batches']} commits, {w['dropped']} dropped, "
                  f"{w['bytes_per_sample']:.1f} bytes/sample on disk); target 300,000")
            print(f"  queries meanwhile: {w['queries']} ({w['queries'] / w['seconds']:.0f}/s), "
                  f"p50 {w['query_p50_ms']:.1f} ms, p95 {w['query_p95_ms']:.1f} ms")
        d = await downsample(Path(tmp) / "day.sqlite")
        print(f"10 Hz day -> 60 s buckets ({d['buckets']} rows): median {d['median_ms']:.1f} ms, "
              f"p95 {d['p95_ms']:.1f} ms, first {d['first_ms']:.1f} ms; target < 50 ms")
        print(f"  same day in 59 s buckets (raw rows, no rollup): {d['raw_median_ms']:.0f} ms for {d['raw_buckets']} rows")
        print(f"  one hour raw ({d['raw_hour_rows']:,} rows): {d['raw_hour_ms']:.0f} ms; day written in {d['setup_s']:.1f} s")


if __name__ == "__main__":
    asyncio.run(main())
