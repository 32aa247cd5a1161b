"""The whole gateway under a formation hall: N conforming racks of 512 channels over Modbus at a 1 s scan.

`linegw simulate` serves the racks in a process of its own and `linegw run` records them on the
embedded store, as on a line-side box. After a warm-up, the gateway's process is sampled: values/s
written by the store, scan overruns, CPU per value (from /proc), bytes on disk per value. A figure for
the product, not a part; run it alone on the machine.

    .venv/bin/python bench/line.py --racks 4 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def health(port: int) -> dict:
    with urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=10) as r:  # 503 is still a body
        return json.load(r)


def get_health(port: int) -> dict:
    try:
        return health(port)
    except Exception as exc:
        body = getattr(exc, "read", None)
        if body is None:
            raise
        return json.loads(body())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--racks", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=20.0)
    ap.add_argument("--api-port", type=int, default=18480)
    ap.add_argument("--first-port", type=int, default=15300)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="linegw-bench-"))
    db = tmp / "line.sqlite"
    eq = "\n".join(
        f"  - id: rack{i}\n    class: formation\n    protocol: modbus\n"
        f"    endpoint: modbus://127.0.0.1:{a.first_port + i}\n    counts: {{channel: 512}}\n"
        f"    adapter: {{scan_interval_ms: 1000}}\n    simulate: {{seed: {i}, time_scale: 600}}"
        for i in range(a.racks))
    line = tmp / "line.yaml"
    line.write_text(f"line: bench\napi: {{host: 127.0.0.1, port: {a.api_port}}}\nstore: {{path: {db}}}\n"
                    f"equipment:\n{eq}\n")
    cmd = [sys.executable, "-m", "gateway.cli"]
    sims = subprocess.Popen(cmd + ["simulate", str(line)], cwd=ROOT, stdout=subprocess.DEVNULL)
    time.sleep(5)
    gw = subprocess.Popen(cmd + ["run", str(line)], cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        time.sleep(a.warmup)
        h0, c0, t0 = get_health(a.api_port), cpu_s(gw.pid), time.monotonic()
        time.sleep(a.seconds)
        h1, c1, t1 = get_health(a.api_port), cpu_s(gw.pid), time.monotonic()
        rss_kb = int(next(x for x in Path(f"/proc/{gw.pid}/status").read_text().splitlines()
                          if x.startswith("VmRSS")).split()[1])

        def overruns(h: dict) -> tuple[int, int]:
            extra = [(e.get("adapter") or {}).get("extra") or {} for e in h["equipment"].values()]
            return sum(int(x.get("overruns", 0)) for x in extra), sum(int(x.get("scans", 0)) for x in extra)

        written = h1["store"]["written"] - h0["store"]["written"]
        o0, s0 = overruns(h0)
        o1, s1 = overruns(h1)
        total = h1["store"]["written"]
        size = sum(p.stat().st_size for p in tmp.glob("line.sqlite*"))
        out = {"racks": a.racks, "seconds": round(t1 - t0, 1), "values_per_s": round(written / (t1 - t0)),
               "cpu_pct": round(100 * (c1 - c0) / (t1 - t0), 1),
               "cpu_us_per_value": round(1e6 * (c1 - c0) / max(written, 1), 1),
               "scans": s1 - s0, "overruns": o1 - o0,
               "bytes_per_value_on_disk": round(size / max(total, 1), 1), "values_stored": total,
               "rss_mb": round(rss_kb / 1024), "status": h1["status"]}
        print(json.dumps(out))
    finally:
        for p in (gw, sims):
            p.send_signal(signal.SIGTERM)
        for p in (gw, sims):
            p.wait(timeout=60)


if __name__ == "__main__":
    main()
