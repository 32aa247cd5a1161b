"""Benchmark: a day of one variable charted on the dashboard, and what the whole UI weighs.

A store is filled with 24 h of one variable at 2 Hz (172,800 samples, as
web.line_speed is sampled), as a running gateway's store holds it: all but the
last minutes sealed into chunks (the compactor seals what was committed
seal_after_s + seal_span_s ago), the newest 12 minutes in the head. The gateway
serves it on uvicorn. Reported:

* api: the trend's query (24 h in the buckets the page asks for) through HTTP;
* browser: the page's own Trend.load in headless chromium, from the request
  to the drawn chart (fetch, JSON, gap detection, uPlot draw);
* weight: bytes of every file the dashboard loads (pages, modules, uPlot).

Run: .venv/bin/python bench/dashboard_trend.py [--repeat 10] [--unsealed]   (needs /usr/bin/chromium)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.api.app import create_app
from gateway.config import LineConfig
from gateway.runtime.line import LineRuntime
from gateway.samples import Quality, Sample
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec

DAY_S = 86400
RATE_HZ = 2.0
PATH = "web.line_speed"
HEAD_S = 720  # the newest samples, not sealed yet: about seal_after_s + seal_span_s
CHROMIUM = "/usr/bin/chromium"


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values):7.1f} ms  max {max(values):7.1f} ms  (n={len(values)})"


async def serve(tmp: Path, started: threading.Event, stop: threading.Event, out: dict) -> None:
    cfg = LineConfig.model_validate({"line": "bench", "store": {"path": str(tmp / "s.sqlite")}, "equipment": [
        {"id": "coater1", "class": "coater", "protocol": "opcua", "endpoint": "opc.tcp://127.0.0.1:1/c"}]})
    # Sealing on demand only (compact()), so that the split between chunks and head is the one a day's store has.
    store = SqliteStore(cfg.store.path, seal_after_s=0, seal_span_s=0, compact_check_s=3600)
    await store.start()
    now = time.time()
    t0 = time.perf_counter()
    n = int(DAY_S * RATE_HZ)
    head = int(HEAD_S * RATE_HZ)

    async def fill(a: int, b: int) -> None:
        for i in range(a, b, 10_000):
            batch = [Sample("coater1", PATH, 30.0 + (k % 600) / 100, "m/min", now - DAY_S + k / RATE_HZ,
                            now - DAY_S + k / RATE_HZ, Quality.GOOD) for k in range(i, min(b, i + 10_000))]
            await store.write_samples_async(batch)
        await store.flush()

    await fill(0, n - head)
    out["sealed"] = 0 if out["unsealed"] else await store.compact()
    await fill(n - head, n)
    out["fill_s"] = time.perf_counter() - t0
    runtime = LineRuntime(cfg, load_spec(), store)
    server = uvicorn.Server(uvicorn.Config(create_app(runtime, store, runtime.spec, cfg.api), host="127.0.0.1", port=0,
                                           log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    out["url"] = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    started.set()
    while not stop.is_set():
        await asyncio.sleep(0.1)
    server.should_exit = True
    await task
    await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--unsealed", action="store_true",
                    help="keep the whole day in the head (a store whose compactor has not run yet): the worst case")
    args = ap.parse_args()
    out: dict = {"unsealed": args.unsealed}
    started, stop = threading.Event(), threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        thread = threading.Thread(target=lambda: asyncio.run(serve(Path(tmp), started, stop, out)), daemon=True)
        thread.start()
        if not started.wait(600):
            raise SystemExit("the gateway did not start")
        try:
            run(out["url"], args.repeat, out["fill_s"], out["sealed"])
        finally:
            stop.set()
            thread.join(60)


def run(url: str, repeat: int, fill_s: float, sealed: int) -> None:
    from playwright.sync_api import sync_playwright

    print(f"store: {int(DAY_S * RATE_HZ):,} samples of {PATH} over 24 h, written in {fill_s:.1f} s; "
          f"{sealed:,} sealed in chunks, the newest {HEAD_S} s in the head")
    api = []
    with httpx.Client(timeout=30) as c:
        for _ in range(repeat):
            t = time.perf_counter()
            r = c.get(f"{url}/api/v1/equipment/coater1/history",
                      params={"path": PATH, "start": "-24h", "bucket": "120s", "agg": "avg"})
            api.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
        points = len(r.json()["series"][0]["points"])
    print(f"api      24 h in 120 s buckets ({points} points): {ms(api)}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = b.new_page(viewport={"width": 1280, "height": 800})
        loaded: dict[str, int] = {}
        page.on("response", lambda resp: "/api/" not in resp.url and loaded.__setitem__(resp.url, len(resp.body())))
        page.goto(f"{url}/#/line")
        page.wait_for_load_state("networkidle")
        drawn = page.evaluate("""async ([path, repeat]) => {
            const { Trend } = await import('/static/chart.js');
            const el = document.createElement('div'); el.style.width = '800px';
            document.body.appendChild(el);
            const trend = new Trend(el), out = [];
            for (let i = 0; i < repeat; i++) { await trend.load('coater1', [path], { span: 86400 }); out.push(trend.loadedMs); }
            return out;
        }""", [PATH, repeat])
        b.close()
    print(f"browser  24 h charted (request to drawn chart): {ms(drawn)}")
    print(f"weight   the whole UI: {sum(loaded.values()):,} bytes in {len(loaded)} files")


if __name__ == "__main__":
    main()
