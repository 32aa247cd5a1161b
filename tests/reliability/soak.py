"""The soak: the demo line four times over (16 machines) under `linegw run`, faults switched on and off at
random, and the gateway's memory, file descriptors, asyncio tasks and event-loop lag sampled at an interval.

Each must stay flat: after a warm-up, the Theil-Sen slope of each (the median of the slopes between every
pair of samples, which one spike cannot tilt) stays below its bound per minute. A PNG chart of the four is
written beside the figures.

`make soak` runs it for 30 minutes, a sample a minute, into bench/results/; the suite runs the same code for
two minutes (tests/reliability/test_soak.py) with bounds wide enough for two minutes of noise, which a leak
of one task or one descriptor per fault still breaks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.clitools import DEMO_LINE
from simulators.line import SimConfig, SimLine
from simulators.simulator import Simulator
from tests.e2e.linegw_process import serving, stop

COPIES = 4
# Bounds per minute of the fitted slopes: the 30-minute soak's, and the suite's two minutes'.
BOUNDS = {"rss_mb": 1.0, "fds": 0.5, "tasks": 0.5, "loop_lag_ms": 5.0}
SHORT_BOUNDS = {"rss_mb": 80.0, "fds": 5.0, "tasks": 10.0, "loop_lag_ms": 200.0}


@dataclass
class Soak:
    minutes: float
    interval_s: float
    t: list[float] = field(default_factory=list)  # minutes since the first sample
    rss_mb: list[float] = field(default_factory=list)
    fds: list[float] = field(default_factory=list)
    tasks: list[float] = field(default_factory=list)
    loop_lag_ms: list[float] = field(default_factory=list)  # the worst within the last minute
    faults: list[str] = field(default_factory=list)  # "minute: machine fault" as switched on

    def slopes(self, warmup: float = 0.25) -> dict[str, float]:
        """Theil-Sen slope per minute of each series, the first `warmup` share of samples left out."""
        skip = int(len(self.t) * warmup)
        return {name: theil_sen(self.t[skip:], getattr(self, name)[skip:]) for name in BOUNDS}


def theil_sen(x: list[float], y: list[float]) -> float:
    pairs = [(y[j] - y[i]) / (x[j] - x[i]) for i in range(len(x)) for j in range(i + 1, len(x)) if x[j] != x[i]]
    if not pairs:
        raise ValueError("a slope needs two samples at different times")
    return statistics.median(pairs)


def demo_copies(copies: int) -> list[dict[str, Any]]:
    """The demo line's machines, `copies` times over, with ids of their own and no simulate sections."""
    demo = yaml.safe_load(DEMO_LINE.read_text())
    out = []
    for k in range(1, copies + 1):
        for eq in demo["equipment"]:
            out.append({**{key: v for key, v in eq.items() if key != "simulate"}, "id": f"{eq['id']}-{k}",
                        "_simulate": eq.get("simulate", {})})
    return out


def sim_configs(machines: list[dict[str, Any]]) -> list[SimConfig]:
    return [SimConfig(m["id"], m["class"], m["protocol"], port=0, dialect=m.get("mapping") or "conforming",
                      seed=int(m["_simulate"].get("seed", 1)) + i, time_scale=float(m["_simulate"].get("time_scale", 1)),
                      machine_name=m.get("machine") or m["id"], options=dict(m["_simulate"].get("options", {})))
            for i, m in enumerate(machines)]


async def switch_faults(sims: dict[str, Simulator], rng: random.Random, soak: Soak, start: float,
                        period_s: float) -> None:
    """Every `period_s` one machine misbehaves for a random 3-10 s: dropped links, a restart with 2 s down,
    slow answers, a frozen machine."""
    while True:
        await asyncio.sleep(rng.uniform(0.5, 1.5) * period_s)
        eid = rng.choice(sorted(sims))
        sim = sims[eid]
        name = rng.choice(["drop_connections", "restart", "slow", "freeze"])
        soak.faults.append(f"{(time.monotonic() - start) / 60:.1f}: {eid} {name}")
        if name == "drop_connections":
            sim.faults.drop_connections()
        elif name == "restart":
            await sim.faults.restart(downtime_s=2.0)
        elif name == "slow":
            sim.faults.slow(0.3)
            await asyncio.sleep(rng.uniform(3, 10))
            sim.faults.slow(0)
        else:
            sim.faults.freeze()
            await asyncio.sleep(rng.uniform(3, 10))
            sim.faults.unfreeze()


def process_figures(pid: int) -> tuple[float, int]:
    """(resident memory in MB, open file descriptors) of a process, from /proc."""
    rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if line.startswith("VmRSS:"))
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def gateway_figures(api: str) -> tuple[float, float]:
    """(asyncio tasks, worst loop lag of the last minute in ms) from the gateway's /metrics."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(api.replace("/api/v1", "") + "/metrics")).text
    values = {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples}
    return values["linegw_asyncio_tasks"], values["linegw_event_loop_lag_max_seconds"] * 1000


async def run_soak(folder: Path, minutes: float, interval_s: float, fault_period_s: float, seed: int = 4) -> Soak:
    rng = random.Random(seed)
    machines = demo_copies(COPIES)
    line = SimLine()
    await line.start(sim_configs(machines))
    soak = Soak(minutes, interval_s)
    try:
        endpoints = line.endpoints()
        for m in machines:
            m["endpoint"] = endpoints[m["id"]]
            m.pop("_simulate")
        line_file = folder / "soak.yaml"
        line_file.write_text(yaml.safe_dump({"line": "soak", "api": {"host": "127.0.0.1", "port": 0},
                                             "store": {"path": str(folder / "soak.sqlite")}, "equipment": machines}))
        gateway, api = await serving(line_file, "soak")
        start = time.monotonic()
        faults = asyncio.create_task(switch_faults(line.simulators, rng, soak, start, fault_period_s))
        try:
            while time.monotonic() - start < minutes * 60:
                rss, fds = process_figures(gateway.pid)
                tasks, lag = await gateway_figures(api)
                soak.t.append((time.monotonic() - start) / 60)
                soak.rss_mb.append(round(rss, 1))
                soak.fds.append(fds)
                soak.tasks.append(tasks)
                soak.loop_lag_ms.append(round(lag, 1))
                await asyncio.sleep(interval_s)
        finally:
            faults.cancel()
            await asyncio.gather(faults, return_exceptions=True)
            code, err = await stop(gateway)
        if code != 0:
            raise AssertionError(f"linegw run ended with {code}: {err[-2000:]}")
    finally:
        await line.stop()
    return soak


def chart(soak: Soak, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: a file
    import matplotlib.pyplot as plt

    titles = {"rss_mb": "resident memory (MB)", "fds": "open file descriptors", "tasks": "asyncio tasks",
              "loop_lag_ms": "worst loop lag of the minute (ms)"}
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    slopes = soak.slopes()
    for ax, (name, title) in zip(axes.flat, titles.items()):
        ax.plot(soak.t, getattr(soak, name), marker=".")
        ax.set_title(f"{title}: {slopes[name]:+.2f}/min", fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("minutes")
    fig.suptitle(f"linegw soak: the demo line x{COPIES} ({COPIES * 4} machines), {len(soak.faults)} faults switched")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--interval", type=float, default=60, help="seconds between samples")
    parser.add_argument("--fault-period", type=float, default=60, help="seconds between faults, on average")
    parser.add_argument("--out", type=Path, help="the samples and slopes as JSON")
    parser.add_argument("--chart", type=Path, help="the PNG chart")
    args = parser.parse_args()
    import logging
    import tempfile

    logging.basicConfig(level=logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        soak = asyncio.run(run_soak(Path(tmp), args.minutes, args.interval, args.fault_period))
    slopes = soak.slopes()
    for name, bound in BOUNDS.items():
        print(f"{name}: {getattr(soak, name)[0]} -> {getattr(soak, name)[-1]}, slope {slopes[name]:+.3f}/min "
              f"(bound {bound}) {'ok' if slopes[name] < bound else 'NOT FLAT'}")
    if args.out:
        args.out.write_text(json.dumps({**asdict(soak), "slopes": slopes, "bounds": BOUNDS}, indent=1))
    if args.chart:
        chart(soak, args.chart)


if __name__ == "__main__":
    _main()
