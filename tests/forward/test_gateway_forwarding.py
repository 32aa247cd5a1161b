"""The gateway itself forwarding a simulated machine to real servers, SIGKILLed mid-stream and restarted.

Afterwards every sample the gateway stored is in victoria-metrics with its
value, unit and timestamp (the batch in flight at the kill at most re-sent,
identically), every one reached an MQTT subscriber, and the clean stop left the
gateway's retained status "offline". /health says "degraded", naming the sink,
while a sink is down.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import sys
import time
from pathlib import Path

import aiomqtt
import httpx

from gateway.samples import Sample
from gateway.store.sqlite import SqliteStore
from tests.forward.conftest import Mosquitto, VictoriaMetrics, assert_resends_identical, retained, series_key, vm_key
from tests.waiting import wait_for

LINE = """
line: fwdtest
api: {{host: 127.0.0.1, port: 0}}
store: {{path: {db}}}
forward:
  influx: {{url: "{vm}", token_env: null, batch_size: {batch}, poll_s: 0.2, backoff_max_s: 0.5}}
  mqtt: {{port: {mqtt}, backoff_max_s: 0.5}}
equipment:
  - id: winder1
    class: winder
    protocol: modbus
    endpoint: modbus://127.0.0.1:0
    adapter: {{scan_interval_ms: 200}}
    simulate: {{seed: 5, time_scale: 20}}
"""


BATCH = 500


async def _start(line_file: Path) -> tuple[asyncio.subprocess.Process, str]:
    """`linegw demo` on the line file; its output goes to a file beside it (a pipe nobody reads would block it)."""
    log = line_file.with_suffix(".log")
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "demo", "--line", str(line_file),
            stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=Path(__file__).parents[2])
    async with asyncio.timeout(60):
        while True:
            for text in log.read_text(errors="replace").splitlines():
                if text.startswith("gateway API"):
                    return proc, text.split()[2]  # http://127.0.0.1:PORT/api/v1
            assert proc.returncode is None, f"linegw demo ended before serving:\n{log.read_text()[-3000:]}"
            await asyncio.sleep(0.1)


async def _get(api: str, route: str) -> dict:
    async with httpx.AsyncClient() as c:
        return (await c.get(f"{api}/{route}", timeout=5)).json()


async def _status_when(api: str, pred, what: str = "forwarding to get on") -> dict:
    async def probe():
        st = await _get(api, "forward")
        return st if pred(st) else None
    return await wait_for(probe, what, timeout=60)


async def test_gateway_forwards_everything_across_a_sigkill(tmp_path: Path, vm: VictoriaMetrics,
                                                             mosquitto: Mosquitto) -> None:
    db = tmp_path / "gw.sqlite"
    line_file = tmp_path / "line.yaml"
    line_file.write_text(LINE.format(db=db, vm=vm.url, mqtt=mosquitto.port, batch=BATCH))
    heard: set[tuple[str, float]] = set()

    ready = asyncio.Event()

    async def subscriber() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
            await sub.subscribe("linegw/fwdtest/winder1/#", qos=1)
            ready.set()  # the broker acknowledged the subscription (SUBACK): it is in place
            async for m in sub.messages:
                heard.add((str(m.topic), json.loads(m.payload)["source_ts"]))

    async with asyncio.TaskGroup() as tg:
        listening = tg.create_task(subscriber())
        async with asyncio.timeout(30):
            await ready.wait()
        proc, api = await _start(line_file)
        try:
            status = await _status_when(api, lambda st: st["influx"]["written"] > 200 and st["mqtt"]["published"] > 200)
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
            await _status_when(api, lambda st: all(x["cursor"] > last_seq_before_kill + 100
                                                  and x["backlog"] < 100 for x in st.values()))
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
        assert proc.returncode == 0
        # A clean stop says so: the retained status is "offline", not the "online" of a running gateway.
        assert await retained(mosquitto.port, "linegw/fwdtest/$gateway/status") == b"offline"

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
    want = {series_key(s, "winder"): float(s.value) for s in numeric}
    assert len(want) == len(numeric)  # no two samples share a series and millisecond: one key, one sample
    match = '{__name__=~"winder_.*", __name__!~".*_q"}'
    await wait_for(lambda: set(want) <= set(_vm_points(vm.points(match))), "every number searchable in vm",
                   timeout=30, interval=0.2)
    # One SIGKILL: the batch in flight may be sent again, identically (InfluxDB overwrites it in place).
    got = assert_resends_identical(vm.points(match), at_most=BATCH)
    got = _vm_points([(labels, ts, v) for (labels, ts), v in got.items()])
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


def _vm_points(points: list[tuple[tuple, int, float]]) -> dict[tuple, float]:
    """Raw victoria-metrics points keyed as series_key keys samples."""
    return {vm_key(labels, ts): value for labels, ts, value in points}


def _topic(s: Sample) -> str:
    return "linegw/fwdtest/winder1/" + s.path.replace(".", "/").replace("[", "/").replace("]", "")


async def test_health_is_degraded_naming_the_sink_while_it_is_down(tmp_path: Path, vm: VictoriaMetrics,
                                                                   mosquitto: Mosquitto) -> None:
    line_file = tmp_path / "line.yaml"
    line_file.write_text(LINE.format(db=tmp_path / "gw.sqlite", vm=vm.url, mqtt=mosquitto.port, batch=BATCH))
    vm.stop()
    proc, api = await _start(line_file)
    try:
        async def degraded():
            h = await _get(api, "health")
            return h if h["forward"]["influx"]["problems"] and h["available"] == 1 else None
        health = await wait_for(degraded, "the gateway to find the InfluxDB sink down", timeout=60)
        assert health["status"] == "degraded" and health["unavailable"] == 0  # the machine is fine; the sink is not
        (problem,) = health["forward"]["influx"]["problems"]
        assert problem.startswith("influx: not delivering") and "Connection" in problem
        assert health["forward"]["mqtt"]["problems"] == [] and health["forward"]["influx"]["connected"] is False
        # /forward says the same, asked a moment later: only the seconds and retries may have moved on
        def shape(text: str) -> str:
            return re.sub(r"\d+", "N", text)
        assert [shape(p) for p in (await _get(api, "forward"))["influx"]["problems"]] == [shape(problem)]

        mosquitto.stop()
        await _status_when(api, lambda st: st["mqtt"]["problems"], "the gateway to find the broker down")
        vm.start()
        mosquitto.start()

        async def ok():
            h = await _get(api, "health")
            return h if h["status"] == "ok" else None
        health = await wait_for(ok, "health back to ok once both sinks take data", timeout=60)
        assert all(s["problems"] == [] and s["connected"] for s in health["forward"].values())
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
