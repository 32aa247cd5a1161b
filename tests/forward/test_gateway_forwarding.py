"""The gateway itself forwarding a simulated machine to real servers, SIGKILLed mid-stream and restarted.

Afterwards every sample the gateway stored is in victoria-metrics exactly once
with its value and timestamp, and every one reached an MQTT subscriber.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import aiomqtt
import httpx

from gateway.samples import Sample
from gateway.store.sqlite import SqliteStore
from tests.forward.conftest import Mosquitto, VictoriaMetrics
from tests.waiting import wait_for

LINE = """
line: fwdtest
api: {{host: 127.0.0.1, port: 0}}
store: {{path: {db}}}
forward:
  influx: {{url: "{vm}", batch_size: 500, poll_s: 0.2}}
  mqtt: {{port: {mqtt}}}
equipment:
  - id: winder1
    class: winder
    protocol: modbus
    endpoint: modbus://127.0.0.1:0
    adapter: {{scan_interval_ms: 200}}
    simulate: {{seed: 5, time_scale: 20}}
"""


async def _start(line_file: Path) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "demo", "--line", str(line_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=Path(__file__).parents[2])
    async with asyncio.timeout(60):
        while True:
            text = (await proc.stdout.readline()).decode()
            assert text, "linegw demo ended before serving"
            if text.startswith("gateway API"):
                return proc, text.split()[2]  # http://127.0.0.1:PORT/api/v1


async def _forward_status(api: str) -> dict:
    async with httpx.AsyncClient() as c:
        return (await c.get(f"{api}/forward", timeout=5)).json()


def _series_key(s: Sample) -> tuple:
    """What victoria-metrics makes of a sample: metric name and labels, timestamp in ms."""
    head, _, variable = s.path.rpartition(".")
    sub_unit, _, index = head.partition("[")
    return (f"winder_{variable}", sub_unit, index.rstrip("]"), round(s.source_ts * 1e9) // 1_000_000)  # ns, cut to ms


async def test_gateway_forwards_everything_across_a_sigkill(tmp_path: Path, vm: VictoriaMetrics,
                                                             mosquitto: Mosquitto) -> None:
    db = tmp_path / "gw.sqlite"
    line_file = tmp_path / "line.yaml"
    line_file.write_text(LINE.format(db=db, vm=vm.url, mqtt=mosquitto.port))
    heard: set[tuple[str, float]] = set()

    async def subscriber() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
            await sub.subscribe("linegw/fwdtest/winder1/#", qos=1)
            async for m in sub.messages:
                heard.add((str(m.topic), json.loads(m.payload)["source_ts"]))

    async def status_when(api: str, pred) -> dict:
        async def probe():
            st = await _forward_status(api)
            return st if pred(st) else None
        return await wait_for(probe, "forwarding to get on", timeout=60)

    async with asyncio.TaskGroup() as tg:
        listening = tg.create_task(subscriber())
        await asyncio.sleep(0.3)
        proc, api = await _start(line_file)
        try:
            status = await status_when(api, lambda st: st["influx"]["written"] > 200 and st["mqtt"]["published"] > 200)
            assert status["influx"]["connected"] and status["mqtt"]["connected"]
            assert status["influx"]["consumer"] == "influx" and status["influx"]["discarded"] == 0
            assert status["influx"]["backlog"] >= 0 and status["influx"]["lag_s"] >= 0
            async with httpx.AsyncClient() as c:
                health = (await c.get(f"{api}/health", timeout=5)).json()
            assert set(health["forward"]) == {"influx", "mqtt"}
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # mid-stream: no goodbye, cursors as last committed
            await proc.wait()
            killed_at = time.time()

        last_seq_before_kill = max(seq for seq, _ in (await _stored(db))[0])
        proc, api = await _start(line_file)  # same store: forwarding resumes from the stored cursors
        try:
            # Both sinks get well past everything the first run stored, so samples of both runs are forwarded.
            await status_when(api, lambda st: all(x["cursor"] > last_seq_before_kill + 100
                                                  and x["backlog"] < 100 for x in st.values()))
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
        assert proc.returncode == 0

        rows, cursors = await _stored(db)
        before_kill = [seq for seq, s in rows if s.gateway_ts < killed_at]
        assert before_kill and all(max(before_kill) <= c for c in cursors.values())  # the kill lost nothing
        to_influx = [s for seq, s in rows if seq <= cursors["influx"]]
        to_mqtt = {(_topic(s), s.source_ts) for seq, s in rows if seq <= cursors["mqtt"]}
        await wait_for(lambda: to_mqtt <= heard, "every forwarded sample at the MQTT subscriber", timeout=30)
        listening.cancel()

    numeric = [s for s in to_influx if type(s.value) in (int, float)]
    # Both runs forwarded numbers: points from before the kill and from after the restart.
    assert any(s.gateway_ts < killed_at for s in numeric) and any(s.gateway_ts > killed_at for s in numeric)
    want = {_series_key(s): float(s.value) for s in numeric}
    # A 204 from victoria-metrics comes before the points are searchable: poll until they are, bounded.
    for _ in range(100):  # a 204 comes before the points are searchable; bounded poll
        got, count = _vm_points(vm)
        if set(want) <= set(got):
            break
        await asyncio.sleep(0.2)
    assert count == len(got)  # no point twice, though some were sent twice around the SIGKILL
    assert sorted(set(want) - set(got)) == []
    # victoria-metrics keeps 12 significant digits
    assert all(math.isclose(got[k], v, rel_tol=1e-11) for k, v in want.items())


async def _stored(db: Path) -> tuple[list[tuple[int, Sample]], dict[str, int]]:
    """Everything in the gateway's store (outbox sequence, sample) and each sink's cursor."""
    store = SqliteStore(db)
    await store.start()
    try:
        return ((await store.read_since(0, 10**7))[0],
                {name: await store.get_cursor(name) for name in ("influx", "mqtt")})
    finally:
        await store.close()


def _vm_points(vm: VictoriaMetrics) -> tuple[dict[tuple, float], int]:
    got: dict[tuple, float] = {}
    count = 0
    for series in vm.export('{__name__=~"winder_.*", __name__!~".*_q"}'):
        m = series["metric"]
        for value, ts in zip(series["values"], series["timestamps"]):
            got[(m["__name__"], m.get("sub_unit", ""), m.get("index", ""), ts)] = value
            count += 1
    return got, count


def _topic(s: Sample) -> str:
    return "linegw/fwdtest/winder1/" + s.path.replace(".", "/").replace("[", "/").replace("]", "")
