"""Data-change notifications per second through OpcUaAdapter, next to bare asyncua.

`--devices` server processes (one per machine) each change all of their N
variables every `--change-ms`; one asyncua server process tops out around
10,000 changes/s, so the gateway's target of 20,000 notifications/s across
devices needs several. In this process, one kind of client at a time connects
to every device and subscribes to all variables for a fixed time:

- "adapter": one OpcUaAdapter per device, its RawReadings checked into spec Samples
  by the runtime's ingest (gateway/runtime/ingest.py), as a running gateway does;
- "asyncua": one plain asyncua Client per device, a Subscription with a handler
  whose datachange_notification makes the same (key, value, timestamp, error) tuple.

Both use the same publishing interval, sampling interval 0 and queue size 1,
so the servers offer each the same stream; what differs is the client's cost.
Reported per client kind: notifications/s delivered and client CPU
microseconds per notification (this process only; servers run in their own).
When servers and client share too few cores, delivered rates are bounded by
the machine; the CPU cost per notification is the figure that carries over.

Each client kind runs `--runs` times (3), alternating; min, median and max. `--out` writes
the results as JSON, from which bench/report.py writes the bench README's row.

Run: .venv/bin/python bench/opcua_notifications.py [--devices K] [--variables N] [--seconds S] [--runs R] [--out F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncua import Client, Server, ua

from bench.figures import machine, spread, today
from gateway.adapters.base import Point, RawReading
from gateway.adapters.opcua import OpcUaAdapter
from gateway.mapping.compile import Target
from gateway.runtime.ingest import to_samples

NS_URI = "urn:bench:equipment"
TARGET = 20_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the server process -----------------------------------------------------------------
def quiet() -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)


def serve(port: int, n: int, period: float, ready: Any, stop: Any, changes: Any) -> None:
    quiet()
    asyncio.run(_serve(port, n, period, ready, stop, changes))


async def _serve(port: int, n: int, period: float, ready: Any, stop: Any, changes: Any) -> None:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace(NS_URI)
    folder = await server.nodes.objects.add_folder(ua.NodeId("Bench", ns), ua.QualifiedName("Bench", ns))
    ids = []
    for i in range(n):
        node = await folder.add_variable(ua.NodeId(f"v{i}", ns), ua.QualifiedName(f"v{i}", ns), ua.Variant(0.0, ua.VariantType.Double))
        ids.append(node.nodeid)
    await server.start()
    ready.set()
    k = 0
    next_at = time.monotonic()
    try:
        while not stop.is_set():
            k += 1
            now = datetime.now(UTC)
            for nid in ids:
                await server.write_attribute_value(nid, ua.DataValue(ua.Variant(float(k), ua.VariantType.Double), SourceTimestamp=now))
            changes.value += n
            next_at = max(next_at + period, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())
    finally:
        await server.stop()


# --- the two clients ----------------------------------------------------------------------
async def measure(name: str, run_client: Any, seconds: float, warmup: float) -> tuple[float, float]:
    count = [0]
    stop = asyncio.Event()
    task = asyncio.create_task(run_client(count, stop))
    await asyncio.sleep(warmup)
    c0, t0, p0 = count[0], time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    c1, t1, p1 = count[0], time.perf_counter(), time.process_time()
    stop.set()
    await task
    rate = (c1 - c0) / (t1 - t0)
    cpu_us = (p1 - p0) / max(1, c1 - c0) * 1e6
    print(f"  {name:8s} {rate:10,.0f} notifications/s   {cpu_us:6.1f} µs client CPU per notification")
    return rate, cpu_us


def adapter_client(endpoint: str, n: int, interval_ms: float) -> Any:
    async def run(count: list[int], stop: asyncio.Event) -> None:
        points = [Point(f"v{i}", {"node": f"nsu={NS_URI};s=v{i}"}) for i in range(n)]
        adapter = OpcUaAdapter(endpoint, points, {"publishing_interval_ms": interval_ms, "sampling_ms": 0, "queue_size": 1})

        targets = {p.key: [Target(f"values.{p.key}", "", "num")] for p in points}

        def on_readings(batch: list[RawReading]) -> None:
            count[0] += len(to_samples("device", targets, batch, time.time()))

        task = asyncio.create_task(adapter.run(on_readings, lambda up, reason: None))
        await stop.wait()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        h = adapter.health()
        if h.extra["overflow"]:
            print(f"           (adapter delivery queue overflowed by {h.extra['overflow']} readings)")

    return run


def asyncua_client(endpoint: str, n: int, interval_ms: float) -> Any:
    async def run(count: list[int], stop: asyncio.Event) -> None:
        client = Client(endpoint)
        await client.connect()
        try:
            ns = await client.get_namespace_index(NS_URI)
            nodes = [client.get_node(ua.NodeId(f"v{i}", ns)) for i in range(n)]
            keys = {node.nodeid: f"v{i}" for i, node in enumerate(nodes)}
            sink: list[tuple[Any, ...]] = []

            class Handler:
                def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
                    dv = data.monitored_item.Value
                    ts = dv.SourceTimestamp or dv.ServerTimestamp
                    sink.append((keys[node.nodeid], val, ts.timestamp() if ts else None, ""))
                    count[0] += 1
                    if len(sink) > 10_000:
                        sink.clear()

            sub = await client.create_subscription(interval_ms, Handler())
            for i in range(0, n, 1000):
                await sub.subscribe_data_change(nodes[i : i + 1000], queuesize=1, sampling_interval=0)
            await stop.wait()
            await sub.delete()
        finally:
            await client.disconnect()

    return run


def on_every(makers: list[Any]) -> Any:
    """One client per device, all counting into the same total."""

    async def run(count: list[int], stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            for make in makers:
                tg.create_task(make(count, stop))

    return run


async def main(args: argparse.Namespace) -> None:
    started_on = machine()
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    devices = []
    for _ in range(args.devices):
        port = free_port()
        ready, changes = ctx.Event(), ctx.Value("q", 0)
        proc = ctx.Process(target=serve, args=(port, args.variables, args.change_ms / 1000, ready, stop, changes), daemon=True)
        proc.start()
        devices.append((f"opc.tcp://127.0.0.1:{port}/bench", ready, changes, proc))
    try:
        for _, ready, _, _ in devices:
            if not await asyncio.to_thread(ready.wait, 120):
                raise SystemExit("a server did not start")
        endpoints = [d[0] for d in devices]
        c0, t0 = sum(d[2].value for d in devices), time.perf_counter()
        await asyncio.sleep(2.0)
        offered = (sum(d[2].value for d in devices) - c0) / (time.perf_counter() - t0)
        print(
            f"{args.devices} devices x {args.variables} variables, changed every {args.change_ms:g} ms: "
            f"{offered:,.0f} value changes/s offered ({os.cpu_count()} CPUs on this machine)"
        )
        print(f"publishing interval {args.interval_ms:g} ms, {args.seconds:g} s per client kind, {args.runs} runs:")
        order = ["adapter", "asyncua"] if not args.reverse else ["asyncua", "adapter"]
        runs = []
        for _ in range(args.runs):
            got = {}
            for name in order:
                make = adapter_client if name == "adapter" else asyncua_client
                client = on_every([make(ep, args.variables, args.interval_ms) for ep in endpoints])
                rate, cpu_us = await measure(name, client, args.seconds, args.warmup)
                got[name] = {"notifications_per_s": round(rate), "cpu_us_per_notification": round(cpu_us, 2)}
            runs.append(got)
        summary: dict[str, Any] = {
            name: {k: spread([r[name][k] for r in runs]) for k in ("notifications_per_s", "cpu_us_per_notification")}
            for name in order}
        summary["cpu_vs_asyncua"] = spread([r["adapter"]["cpu_us_per_notification"]
                                            / r["asyncua"]["cpu_us_per_notification"] for r in runs])
        ca = summary["adapter"]["cpu_us_per_notification"]["median"]
        print(f"adapter+ingest/asyncua client CPU per notification, median: {summary['cpu_vs_asyncua']['median']:.2f}x")
        print(
            f"adapter capacity at {ca:.1f} µs per notification: about {1e6 / ca:,.0f} notifications/s per client core "
            f"(target {TARGET:,}/s across devices)"
        )
        if args.out:
            result = {"script": "opcua_notifications.py", "measured": today(), "machine": started_on,
                      "devices": args.devices, "variables": args.variables, "change_ms": args.change_ms,
                      "interval_ms": args.interval_ms, "seconds": args.seconds, "offered_per_s": round(offered),
                      "runs": runs, "summary": summary}
            args.out.write_text(json.dumps(result, indent=1) + "\n")
    finally:
        stop.set()
        for *_, proc in devices:
            await asyncio.to_thread(proc.join, 10)
            if proc.is_alive():
                proc.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--variables", type=int, default=1000)
    parser.add_argument("--change-ms", type=float, default=100.0, help="the server changes every variable this often")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--interval-ms", type=float, default=100.0)
    parser.add_argument("--reverse", action="store_true", help="measure bare asyncua first")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    quiet()
    asyncio.run(main(parser.parse_args()))
