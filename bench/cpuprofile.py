"""Where the whole gateway's CPU goes, by stage of the per-value path: py-spy over its processes at once.

bench/line.py calls `record` during a run's measuring window (`--profile-s`). py-spy samples every process of the
gateway (its own, the acquisition workers, the store's encoding process) without stopping it (`--nonblocking`, 20
samples a second per thread), for the same seconds. Each sample is put in the stage of its innermost frame that
belongs to one (STAGES, in the gateway's own process; the other processes are a stage each), so that time spent in C
(SQLite, pcodec, a socket write) counts in the stage whose Python called it. A stage's share of all samples times the
run's CPU per value is what that stage costs per value: the profile that says what a missed CPU target is made of.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

RATE_HZ = 20

# (stage, frames that put a sample in it: "function" or "file fragment/"), innermost match first.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("store: SQLite row inserts", ("Writer._insert",)),
    ("store: rows and index built from samples", ("Writer._prepare", "Writer._params", "_param_chunks",
                                                  "_well_formed", "_index_rows")),
    ("store: transactions, commits, the writer's loop", ("Writer.",)),
    ("store: seals applied, retention, reads", ("gateway/store/",)),
    ("validation into Sample objects", ("gateway/runtime/ingest.py",)),
    ("device: duplicates, live picture, alarms, events", ("gateway/runtime/device.py",)),
    ("live WebSocket fan-out", ("gateway/api/routes/live.py", "gateway/api/present.py", "websockets/")),
    ("readings from the workers (unpacking)", ("gateway/runtime/workers.py",)),
    ("adapters in the gateway's process", ("gateway/adapters/", "pymodbus/", "asyncua/")),
    # The loop's wait for the sockets (epoll): a wake-up per Modbus response or WebSocket write; kernel time.
    ("event loop: polling the sockets", ("selectors.py",)),
    ("API, health and the rest of the gateway", ("gateway/",)),
]
OTHER = "event loop, threads, garbage collector"
LOOSE = (OTHER, "API, health and the rest of the gateway", "acquisition workers (Modbus reads and decoding)")
PROCESS_STAGES = {"workers": "acquisition workers (Modbus reads and decoding)",
                  "encoder": "sealing: the store's encoding process"}


def _matches(frame: str, key: str) -> bool:
    func, _, where = frame.partition(" (")
    if key.endswith(("/", ".py")):  # a folder or a file
        return where.startswith(key) or f"/{key}" in where
    if key.endswith("."):  # a class's methods
        return func.startswith(key)
    return func == key


def stage_of(frames: list[str]) -> str:
    """The stage of one sample of the gateway's own process: its innermost frame that names one."""
    for frame in reversed(frames):
        for stage, keys in STAGES:
            if any(_matches(frame, k) for k in keys):
                return stage
    return OTHER


def record(parts: dict[str, list[int]], seconds: float) -> dict[str, Any]:
    """Samples of every process, by stage. parts: "gateway", "workers", "encoder" -> their pids."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    tmp = Path(tempfile.mkdtemp(prefix="linegw-profile-"))
    procs = []
    for part, pids in parts.items():
        for pid in pids:
            out = tmp / f"{part}-{pid}.txt"
            procs.append((part, out, subprocess.Popen(
                [spy, "record", "-p", str(pid), "--nonblocking", "-r", str(RATE_HZ), "-d", str(int(seconds)),
                 "-f", "raw", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    samples: Counter[str] = Counter()
    loose: Counter[str] = Counter()  # the innermost frames of the samples no named stage took, to see what they are
    for part, out, proc in procs:
        _, err = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"py-spy on the {part} process failed: {err.decode()[-500:]}")
        for line in out.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            frames = stack.split(";")
            stage = PROCESS_STAGES.get(part) or stage_of(frames)
            samples[stage] += int(n)
            if stage in LOOSE:
                loose[f"{stage}: {frames[-1]}"] += int(n)
    shutil.rmtree(tmp, ignore_errors=True)
    total = sum(samples.values())
    return {"seconds": seconds, "rate_hz": RATE_HZ, "samples": total,
            "share": {stage: round(n / total, 4) for stage, n in samples.most_common()},
            "loose_frames": {frame: round(n / total, 4) for frame, n in loose.most_common(12)}}
