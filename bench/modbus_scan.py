"""Read rate of the Modbus adapter, against a bare pymodbus loop doing the same reads.

10 simulated devices (ModbusSimServer, in a separate process so the servers do
not share the measuring process's CPU), 1,000 holding registers each, mapped
as float32, int32 and uint16 points. Both sides issue the same planned
requests, one in flight per device, all devices concurrently:

1. bare: a pymodbus client per device reading the planned requests back to back,
   no decoding, no readings (the upper bound);
2. adapter: a ModbusAdapter per device, run() with a tiny scan interval, every
   point decoded, delivered as a RawReading and checked into a spec Sample by the
   runtime's ingest (gateway/runtime/ingest.py), as a running gateway does.

Each side runs `--runs` times (3), alternating; min, median and max. `--out` writes the
results as JSON, from which bench/report.py writes the bench README's row.

Run: .venv/bin/python bench/modbus_scan.py [--devices 10] [--registers 1000] [--seconds 5] [--runs 3] [--out F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pymodbus.client import AsyncModbusTcpClient

from bench.figures import machine, spread, today
from gateway.adapters.base import Point, RawReading
from gateway.adapters.modbus import ModbusAdapter
from gateway.adapters.modbus.planner import Extent, plan
from gateway.mapping.compile import Target
from gateway.runtime.ingest import to_samples
from interface_spec.modbus_codec import encode, register_count
from simulators.servers.modbus_server import ModbusSimServer

DTYPES = ("float32", "int32", "uint16", "uint16")  # repeating pattern over the registers


def point_map(registers: int) -> list[Point]:
    points, address, i = [], 0, 0
    while True:
        dtype = DTYPES[i % len(DTYPES)]
        n = register_count(dtype)
        if address + n > registers:
            return points
        points.append(Point(f"p{address}", {"table": "holding", "address": address, "dtype": dtype}))
        address += n
        i += 1


async def serve(devices: int, registers: int) -> None:
    """The server process: start the devices, print their ports, run until stdin closes."""
    servers = [ModbusSimServer(port=0, size=max(registers, 1)) for _ in range(devices)]
    for s in servers:
        await s.start()
        for p in point_map(registers):
            o = p.options
            s.set_registers(o["address"], encode(7, o["dtype"]))
    print(json.dumps([s.port for s in servers]), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for s in servers:
        await s.stop()


async def bare(ports: list[int], points: list[Point], seconds: float) -> tuple[int, int]:
    """(points, requests) read by plain pymodbus clients in `seconds`."""
    requests = plan([Extent(1, "holding", p.options["address"], register_count(p.options["dtype"])) for p in points])
    per_scan = len(points)
    totals = [0, 0]

    async def device(port: int, stop_at: float) -> None:
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0, reconnect_delay=0)
        await client.connect()
        loop = asyncio.get_running_loop()
        try:
            while loop.time() < stop_at:
                for r in requests:
                    rr = await client.read_holding_registers(r.address, count=r.count, device_id=1)
                    if rr.isError() or len(rr.registers) != r.count:
                        raise RuntimeError(f"bad reply {rr}")
                totals[0] += per_scan
                totals[1] += len(requests)
        finally:
            client.close()

    stop_at = asyncio.get_running_loop().time() + seconds
    await asyncio.gather(*(device(port, stop_at) for port in ports))
    return totals[0], totals[1]


async def adapter(ports: list[int], points: list[Point], seconds: float) -> tuple[int, int, int]:
    """(samples, requests, read errors) delivered by ModbusAdapter.run() into the runtime's ingest in `seconds`."""
    counted = [0, 0]
    adapters = [ModbusAdapter(f"127.0.0.1:{port}", points, {"scan_interval_ms": 0.001, "timeout_s": 2})
                for port in ports]
    targets = {p.key: [Target(f"registers.{p.key}", "", "num", lo=0, hi=1e6)] for p in points}

    def on_readings(readings: list[RawReading]) -> None:
        samples = to_samples("device", targets, readings, time.time())
        counted[0] += len(samples)
        counted[1] += sum(1 for s in samples if s.reason)

    def on_link(up: bool, reason: str) -> None:
        if not up:
            print(f"link down: {reason}", file=sys.stderr)

    tasks = [asyncio.create_task(a.run(on_readings, on_link)) for a in adapters]
    await asyncio.sleep(seconds)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return counted[0], sum(a.health().requests for a in adapters), counted[1]


def one_run(b: tuple[int, int, float, float], a: tuple[int, int, int, float, float]) -> dict[str, Any]:
    (b_points, b_requests, b_s, b_cpu), (a_points, a_requests, a_errors, a_s, a_cpu) = b, a
    return {
        "bare": {"points_per_s": round(b_points / b_s), "requests_per_s": round(b_requests / b_s),
                 "cpu_us_per_point": round(b_cpu / b_points * 1e6, 3)},
        "adapter": {"points_per_s": round(a_points / a_s), "requests_per_s": round(a_requests / a_s),
                    "cpu_us_per_point": round(a_cpu / max(a_points, 1) * 1e6, 3), "errors": a_errors},
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--registers", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        await serve(args.devices, args.registers)
        return
    started_on = machine()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", "--devices", str(args.devices), "--registers", str(args.registers),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    ports = json.loads(await proc.stdout.readline())
    points = point_map(args.registers)
    n_requests = len(plan([Extent(1, "holding", p.options["address"], register_count(p.options["dtype"]))
                           for p in points]))
    print(f"{args.devices} devices x {args.registers} registers: {len(points)} points, "
          f"{n_requests} requests per device scan; {args.seconds:g} s each, {args.runs} runs")
    runs = []
    try:
        for _ in range(args.runs):
            t0, c0 = time.perf_counter(), time.process_time()
            b_points, b_requests = await bare(ports, points, args.seconds)
            b = (b_points, b_requests, time.perf_counter() - t0, time.process_time() - c0)
            t0, c0 = time.perf_counter(), time.process_time()
            a_points, a_requests, a_errors = await adapter(ports, points, args.seconds)
            a = (a_points, a_requests, a_errors, time.perf_counter() - t0, time.process_time() - c0)
            runs.append(one_run(b, a))
            r = runs[-1]
            print(f"bare pymodbus : {r['bare']['points_per_s']:12,} points/s  "
                  f"{r['bare']['cpu_us_per_point']:6.2f} us client CPU per point")
            print(f"adapter+ingest: {r['adapter']['points_per_s']:12,} samples/s "
                  f"{r['adapter']['cpu_us_per_point']:6.2f} us client CPU per sample ({a_errors} bad)")
    finally:
        proc.stdin.close()
        await proc.wait()
    # Client CPU per point is the steadier figure on a shared machine: the
    # wall-clock rate also depends on how often the server process sleeps.
    result = {
        "script": "modbus_scan.py", "measured": today(), "machine": started_on,
        "devices": args.devices, "registers": args.registers, "points": len(points), "requests_per_scan": n_requests,
        "seconds": args.seconds, "runs": runs,
        "summary": {side: {k: spread([r[side][k] for r in runs]) for k in ("points_per_s", "cpu_us_per_point")}
                    for side in ("bare", "adapter")}
                   | {"cpu_vs_bare": spread([r["adapter"]["cpu_us_per_point"] / r["bare"]["cpu_us_per_point"]
                                             for r in runs])},
    }
    print(f"adapter+ingest CPU per value, median: {result['summary']['cpu_vs_bare']['median']:.2f}x bare pymodbus")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
