"""Speed of the forwarders: how fast a backlog drains to a real server.

A store holds N samples (formation-like: 512 channels x a few variables) that
no sink has seen; the InfluxDB forwarder drains them to a victoria-metrics on
loopback, then the MQTT forwarder to a mosquitto, then the Sparkplug B sink to
the same mosquitto. Reported: samples/s and the batch size for InfluxDB;
messages/s for MQTT (QoS 1, one message per sample); metrics/s, CPU and bytes
per metric on the wire for Sparkplug (500 metrics per DDATA, as configured by
default).
The line rate they have to keep up with: the demo line stores ~400 samples/s;
a 512-channel formation rack scanned every second, ~5,000.

Run: .venv/bin/python bench/forward.py [--samples N] [--batch 5000,1000]
Needs victoria-metrics and mosquitto (make system-deps).

Figures (2 cores, two runs, 200,000 samples): InfluxDB 70k samples/s with
batches of 5,000 and 82k with 1,000 (gzip and the server's parse overlap
better with smaller requests); MQTT 4,850 messages/s. MQTT is bound by the
client library's per-message work and a PUBACK round trip per message:
keeping a whole batch in flight at once gained under 10 % in a trial, so the
forwarder keeps the simpler one-at-a-time order. That is 12x the demo line's
rate and about one 512-channel rack scanned every second per forwarder.
Sparkplug B (100,000 samples, one run): 189k metrics/s, 5.1 us of CPU per
metric in the gateway's process, 21 bytes per metric on the wire (alias,
datatype, source timestamp and value; 500 to a DDATA): many metrics per
message is what plain MQTT's one message per sample cannot do.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiomqtt

from gateway.forward.config import InfluxForward, MqttForward, SparkplugForward
from gateway.forward.influx import InfluxForwarder
from gateway.forward.mqtt import MqttForwarder
from gateway.forward.sparkplug import SparkplugForwarder
from gateway.samples import Quality, Sample
from gateway.store import SqliteStore
from interface_spec import load_spec
from tests.forward.conftest import Mosquitto, VictoriaMetrics

VARIABLES = ("voltage", "current", "capacity", "temperature")


def _samples(n: int, t0: float) -> list[Sample]:
    out = []
    for i in range(n):
        ch, var = divmod(i, len(VARIABLES))
        out.append(Sample("form1", f"channel[{ch % 512}].{VARIABLES[var]}", 3.0 + i * 1e-6, "V",
                          t0 + i // 2048, t0 + i // 2048, Quality.GOOD))
    return out


async def _drain(fwd, store, n: int) -> float:
    t = time.perf_counter()
    task = asyncio.create_task(fwd.run())
    while fwd.stats()["cursor"] < n:
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - t
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return elapsed


async def main(n: int, batches: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        vm, broker = VictoriaMetrics(work / "vm"), Mosquitto(work)
        vm.start()
        broker.start()
        try:
            store = SqliteStore(work / "b.sqlite")
            await store.start()
            t0 = float(int(time.time()) - 3600)
            data = _samples(n, t0)
            for i in range(0, n, 10_000):
                await store.write_samples_async(data[i:i + 10_000])
            await store.flush()
            for batch in batches:
                fwd = InfluxForwarder(store, InfluxForward(url=vm.url, batch_size=batch, poll_s=0.01,
                                                           consumer=f"influx{batch}"), "bench", {"form1": "formation"})
                s = await _drain(fwd, store, n)
                print(f"influx  batch {batch:>5}: {n:,} samples in {s:.2f} s = {n / s:,.0f} samples/s")
            fwd = MqttForwarder(store, MqttForward(port=broker.port), "bench", poll_s=0.01)
            s = await _drain(fwd, store, n)
            print(f"mqtt    QoS 1      : {n:,} messages in {s:.2f} s = {n / s:,.0f} messages/s")
            # Sparkplug: many metrics per DDATA; bytes on the wire counted by a subscriber, CPU of this process.
            wire = {"bytes": 0, "messages": 0}
            ready = asyncio.Event()

            async def listen() -> None:
                async with aiomqtt.Client("127.0.0.1", broker.port) as c:
                    await c.subscribe("spBv1.0/bench/DDATA/#", qos=1)
                    ready.set()
                    async for m in c.messages:
                        wire["bytes"] += len(bytes(m.payload))  # type: ignore[arg-type]  # aiomqtt types payloads as any JSON value; here they are bytes
                        wire["messages"] += 1

            listener = asyncio.create_task(listen())
            await ready.wait()
            avail = [Sample("form1", "status.availability", 1, "", t0, t0, Quality.GOOD)]
            await store.write_samples_async(avail)  # born before its data
            await store.flush()
            fwd = SparkplugForwarder(store, SparkplugForward(port=broker.port, group_id="bench", poll_s=0.01),
                                     "bench", {"form1": "formation"}, load_spec())
            cpu = time.process_time()
            s = await _drain(fwd, store, n + 1)
            cpu = time.process_time() - cpu
            await asyncio.sleep(0.5)
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            print(f"sparkplug DDATA    : {n:,} metrics in {s:.2f} s = {n / s:,.0f} metrics/s, "
                  f"{cpu / n * 1e6:.1f} us CPU per metric (this process, broker on the other core), "
                  f"{wire['bytes'] / n:.1f} bytes per metric on the wire in {wire['messages']:,} messages")
            await store.close()
        finally:
            vm.stop()
            broker.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--batch", default="5000,1000")
    args = ap.parse_args()
    asyncio.run(main(args.samples, [int(x) for x in args.batch.split(",")]))
