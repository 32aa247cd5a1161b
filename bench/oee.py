"""OEE of a day of a 4-machine line, computed from the embedded store: how long a report takes.

The store is filled as the gateway would fill it for one day of the demo line's
shape (a coater and a formation rack serving `state.e10_state`, two winders
serving PackML state and operation mode only, so their E10 state is derived):
state series every 200 ms, the three counters and the design speed every
second, --process series of process values per machine every second, a few
hundred stops a day per machine (random lengths, a stop-reason alarm on a
third of them), and one link outage per machine. Then, --runs times each:

1. the day report (every machine, stages, line, bottleneck);
2. the day per shift (three 8-hour shifts: one report per shift);
3. the last hour (what a dashboard refreshing live asks).

Reports min/median/max seconds per report and writes bench/results/oee.json.

Run: .venv/bin/python bench/oee.py [--runs 5] [--process 5] [--dir DIR [--reuse]]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.analytics.oee import OeeCalculator
from gateway.analytics.shifts import Shifts
from gateway.samples import Quality, Sample
from gateway.store import SqliteStore
from interface_spec import load_spec

DAY = 86400.0
T0 = 1_764_547_200.0  # 2025-12-01T00:00Z
MACHINES = {"coater1": "coater", "winder1": "winder", "winder2": "winder", "formation1": "formation"}
DERIVED = {"winder1", "winder2"}  # PackML only, as the demo line's vendor winders
STATE_PERIOD_S, COUNTER_PERIOD_S = 0.2, 1.0
STOPS_PER_DAY = 300
SPEC = load_spec()
E10, PACKML, MODE = SPEC.enum("e10_state"), SPEC.enum("packml_state"), SPEC.enum("operation_mode")


def script(eq: str, rng: random.Random) -> tuple[list[tuple[float, float, str]], list[tuple[float, float]]]:
    """(start, end, 'PRD'|'SBY'|'UDT') periods covering the day, and the stop-reason alarm intervals."""
    stops = sorted(rng.uniform(0, DAY - 3600) for _ in range(STOPS_PER_DAY))
    periods, alarms, t = [], [], 0.0
    for s in stops:
        if s <= t:
            continue
        periods.append((t, s, "PRD"))
        length = rng.expovariate(1 / 90.0)
        kind = "UDT" if rng.random() < 1 / 3 else "SBY"
        periods.append((s, s + length, kind))
        if kind == "UDT":
            alarms.append((s, s + length))
        t = s + length
    periods.append((t, DAY, "PRD"))
    return periods, alarms


def samples_for(eq: str, periods: list[tuple[float, float, str]], lo: float, hi: float, process: int,
                outage: tuple[float, float]) -> list[Sample]:
    out: list[Sample] = []
    idx = 0
    units = int(lo / 12)
    k0, k1 = int(lo / STATE_PERIOD_S), int(hi / STATE_PERIOD_S)
    for k in range(k0, k1):
        t = k * STATE_PERIOD_S
        if outage[0] <= t < outage[1]:
            continue
        while periods[idx][1] <= t:
            idx += 1
        state = periods[idx][2]
        ts = T0 + t
        if eq in DERIVED:
            packml = {"PRD": "Execute", "SBY": "Idle", "UDT": "Held"}[state]
            out.append(Sample(eq, "state.packml_state", PACKML[packml], "", ts, ts, Quality.GOOD, ""))
            out.append(Sample(eq, "state.operation_mode", MODE["Processing"], "", ts, ts, Quality.GOOD, ""))
        else:
            out.append(Sample(eq, "state.e10_state", E10[state], "", ts, ts, Quality.GOOD, ""))
        if k % 5 == 0:  # once a second
            units = int(t / 12)  # about one unit per 12 s; exactness is the tests' business, not the bench's
            out += [Sample(eq, "counters.processed_count", units, "", ts, ts, Quality.GOOD, ""),
                    Sample(eq, "counters.good_count", units - units // 50, "", ts, ts, Quality.GOOD, ""),
                    Sample(eq, "counters.defective_count", units // 50, "", ts, ts, Quality.GOOD, ""),
                    Sample(eq, "counters.design_speed", 6.0, "/min", ts, ts, Quality.GOOD, "")]
            out += [Sample(eq, f"bench.process_{i}", 20.0 + (t % 7), "", ts, ts, Quality.GOOD, "")
                    for i in range(process)]
    return out


async def fill(store: SqliteStore, process: int) -> int:
    rng = random.Random(7)
    written = 0
    for eq in MACHINES:
        periods, alarms = script(eq, rng)
        start = rng.uniform(3600, DAY - 7200)
        outage = (start, start + rng.uniform(60, 900))
        for hour in range(24):
            batch = samples_for(eq, periods, hour * 3600.0, (hour + 1) * 3600.0, process, outage)
            for i in range(0, len(batch), 20_000):
                await store.write_samples_async(batch[i:i + 20_000])
            written += len(batch)
        await store.record_link(eq, T0 + outage[0], False, "connection refused")
        await store.record_link(eq, T0 + outage[1], True, "")
        for n, (a, b) in enumerate(alarms):
            code = 2002 if MACHINES[eq] == "winder" else 1
            occ = f"{eq}-{n}"
            await store.record_alarm(eq, occ, code, "stop", 900, "raised", T0 + a, True, None)
            await store.record_alarm(eq, occ, code, "stop", 900, "cleared", T0 + b, True, None)
    await store.flush()
    return written


async def timed(fn, runs: int) -> dict[str, float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t)
    return {"min": round(min(times), 4), "median": round(statistics.median(times), 4), "max": round(max(times), 4)}


async def main(args: argparse.Namespace) -> dict:
    folder = Path(args.dir or tempfile.mkdtemp(prefix="bench-oee-"))
    path = folder / "oee.sqlite"
    reuse = args.reuse and path.exists()
    if not reuse:
        for old in folder.glob("oee.sqlite*"):
            old.unlink()
    # A day-old store has sealed its rows into compressed chunks (a store that seals): a freshly filled one
    # is sealed before timing, so the figures are those of a past day, not of rows still in the head.
    sealing = {k: 0.0 for k in ("seal_after_s", "seal_span_s") if k in inspect.signature(SqliteStore).parameters}
    async with SqliteStore(path, **sealing) as store:
        t = time.perf_counter()
        written = 0 if reuse else await fill(store, args.process)
        fill_s = time.perf_counter() - t
        t = time.perf_counter()
        compact = getattr(store, "compact", None)  # seals whatever is due, now
        if compact is not None:
            await compact()
        seal_s = time.perf_counter() - t
        calc = OeeCalculator(store, SPEC, MACHINES)
        shifts = Shifts.model_validate({"calendar": [{"name": "early", "start": "06:00", "end": "14:00"},
                                                     {"name": "late", "start": "14:00", "end": "22:00"},
                                                     {"name": "night", "start": "22:00", "end": "06:00"}]})
        day = await calc.report(T0, T0 + DAY)
        results = {
            "machine": platform.platform(), "python": platform.python_version(),
            "reused_store": reuse, "samples_stored": written, "fill_s": round(fill_s, 1), "seal_s": round(seal_s, 1),
            "sealed_samples": store.stats().get("sealed_samples"),
            "day_report_s": await timed(lambda: calc.report(T0, T0 + DAY), args.runs),
            "day_per_shift_s": await timed(lambda: calc.shift_report(shifts, T0, T0 + DAY), args.runs),
            "last_hour_s": await timed(lambda: calc.report(T0 + DAY - 3600, T0 + DAY), args.runs),
            "day_figures": {m["equipment"]: {"oee": m["oee"], "availability": m["availability"],
                                             "unobserved_s": m["unobserved_s"], "failures": m["failures"]}
                            for m in day["machines"]},
            "bottleneck": day["bottleneck"]["stage"] if day["bottleneck"] else None,
        }
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--process", type=int, default=5, help="process-value series per machine (store size)")
    ap.add_argument("--dir", help="where the bench store goes (default: a new temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="time the store a previous run left in --dir, unfilled")
    res = asyncio.run(main(ap.parse_args()))
    print(json.dumps(res, indent=1))
    out = Path(__file__).resolve().parent / "results" / "oee.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
