"""SIGKILL under load, at seeded random moments: the whole gateway (`linegw run`) killed and started again.

A formation rack of 64 channels over Modbus (a real simulator, in this process, serving on through
every kill) is read by `linegw run` into its store, which forwards everything to a real InfluxDB write
API (victoria-metrics). Each round starts the gateway, waits a seeded random 1.5-5 s once it records,
asks the API for the last heartbeat it has stored (what the store has acknowledged), and kills it with
SIGKILL. After each kill:

* the store file passes `PRAGMA integrity_check`
* every heartbeat up to the one the API showed before the kill is still there (nothing acknowledged lost)

After the last round the gateway runs until its outbox is drained, and the sink holds every stored
heartbeat exactly once, but for identical re-sends of at most one batch per kill (the outbox resumes
where the sink acknowledged, not where it was killed).

`python -m tests.reliability.sigkill --kills 10` prints the rounds (`make sigkill`); the suite runs three.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from simulators.line import SimConfig, SimLine

EQ = "form1"
HEARTBEAT = "status.heartbeat"
SINK_SERIES = '{__name__="formation_heartbeat"}'  # the heartbeat as the InfluxDB sink writes it
LINEGW = [sys.executable, "-m", "gateway.cli"]
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Round:
    kill_after_s: float  # from recording to the kill
    acknowledged: int  # heartbeats the API showed just before the kill
    kept: int  # of those, still in the store after it
    integrity: str  # PRAGMA integrity_check
    stored: int  # heartbeat rows in the store after the kill


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_line(folder: Path, endpoint: str, port: int, sink: str) -> Path:
    line = folder / "line.yaml"
    line.write_text(json.dumps({
        "line": "sigkill", "api": {"host": "127.0.0.1", "port": port},
        "store": {"path": str(folder / "store.sqlite")},
        "equipment": [{"id": EQ, "class": "formation", "protocol": "modbus", "endpoint": endpoint,
                       "counts": {"channel": 64}, "adapter": {"scan_interval_ms": 250}}],
        "forward": {"influx": {"url": sink, "token_env": None, "batch_size": 2000}},
    }))
    return line


def heartbeats(api: str) -> list[float]:
    """The heartbeats the gateway's API shows as stored (the last hour: the whole series here)."""
    r = httpx.get(f"{api}/api/v1/equipment/{EQ}/history", params={"path": HEARTBEAT, "start": "-1h"}, timeout=10)
    if r.status_code != 200:
        raise AssertionError(f"history: {r.status_code} {r.text}")
    [series] = r.json()["series"]
    return [p["ts"] for p in series["points"]]


def store_heartbeats(db: Path) -> tuple[str, list[float]]:
    """(integrity_check, heartbeat source times) read from the store file after a kill, the way the gateway
    reads it when it starts again (WAL recovered on open)."""
    from gateway.store.sqlite import SqliteStore

    conn = sqlite3.connect(db, timeout=10)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()

    async def read() -> list[float]:
        async with SqliteStore(db) as s:
            return [r["ts"] for r in await s.history(EQ, HEARTBEAT, 0, time.time() + 3600, limit=1_000_000)]

    return integrity, asyncio.run(read())


async def _until_recording(api: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"linegw run ended with {proc.returncode}")
            try:
                r = await client.get(f"{api}/api/v1/equipment/{EQ}/history",
                                     params={"path": HEARTBEAT, "start": "-10min"})
                if r.status_code == 200 and r.json()["series"][0]["points"]:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("the gateway did not record within a minute")


async def run_series(folder: Path, sink_url: str, kills: int, seed: int) -> tuple[list[Round], list[float], float]:
    """Kill the gateway `kills` times; returns the rounds, every stored heartbeat after a last clean run, and
    the time that run's outbox was drained (every heartbeat stored before it has been sent)."""
    rng = random.Random(seed)
    sims = SimLine()
    await sims.start([SimConfig(EQ, "formation", "modbus", port=0, seed=seed, time_scale=600,
                                counts={"channel": 64})])
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    line = write_line(folder, sims.endpoints()[EQ], port, sink_url)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rounds: list[Round] = []
    try:
        for _ in range(kills):
            proc = subprocess.Popen([*LINEGW, "run", str(line)], cwd=folder, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                await _until_recording(api, proc)
                wait = rng.uniform(1.5, 5.0)
                await asyncio.sleep(wait)
                acked = await asyncio.to_thread(heartbeats, api)
            finally:
                proc.send_signal(signal.SIGKILL)
                await asyncio.to_thread(proc.wait)
            integrity, stored = await asyncio.to_thread(store_heartbeats, folder / "store.sqlite")
            rounds.append(Round(round(wait, 2), len(acked), len(set(acked) & set(stored)), integrity, len(stored)))
        # A last run, stopped cleanly once the outbox is drained.
        proc = subprocess.Popen([*LINEGW, "run", str(line)], cwd=folder, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await _until_recording(api, proc)
            drained_at = await _drained(api)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 30)
        _, final = await asyncio.to_thread(store_heartbeats, folder / "store.sqlite")
        return rounds, final, drained_at
    finally:
        await sims.stop()


async def _drained(api: str, timeout: float = 60) -> float:
    """Until the sink's backlog is empty; the time it was last seen not empty (the gateway keeps recording:
    what it stores from then on may not have been sent yet)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            asked = time.time()
            r = await client.get(f"{api}/api/v1/forward")
            sinks: list[dict[str, Any]] = list(r.json().values()) if r.status_code == 200 else []
            if sinks and all(s.get("backlog", 1) == 0 for s in sinks):
                return asked
            await asyncio.sleep(0.5)
    raise AssertionError("the outbox did not drain within a minute")


def unsent(stored: list[float], drained_at: float, in_sink_ms: set[int]) -> list[float]:
    """Heartbeats stored before the outbox was seen drained that the sink does not hold (must be none)."""
    # The sink writes nanoseconds (round(ts * 1e9)); the sink keeps milliseconds, truncated.
    return [ts for ts in stored if ts < drained_at - 1.0 and round(ts * 1e9) // 1_000_000 not in in_sink_ms]


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from tests.forward.conftest import VictoriaMetrics, assert_resends_identical

    with tempfile.TemporaryDirectory() as tmp:
        vm = VictoriaMetrics(Path(tmp) / "vm")
        vm.start()
        try:
            rounds, final, drained_at = asyncio.run(run_series(Path(tmp), vm.url, args.kills, args.seed))
            asyncio.run(vm.searchable(SINK_SERIES, at_least=sum(ts < drained_at - 1.0 for ts in final)))
            got = assert_resends_identical(vm.points(SINK_SERIES), at_most=args.kills * 2000)
        finally:
            vm.stop()
    missing = unsent(final, drained_at, {ts for _, ts in got})
    print("| kill | after (s) | acknowledged | kept | integrity_check |\n|---|---|---|---|---|")
    for i, r in enumerate(rounds, 1):
        print(f"| {i} | {r.kill_after_s} | {r.acknowledged} | {r.kept} | {r.integrity} |")
    print(f"stored heartbeats {len(final)}, in the sink {len(got)}, stored before the drain and not in the sink "
          f"{len(missing)}")
    if args.out:
        args.out.write_text(json.dumps({"rounds": [asdict(r) for r in rounds], "stored": len(final),
                                        "in_sink": len(got), "unsent": len(missing), "seed": args.seed}, indent=1))


if __name__ == "__main__":
    _main()
