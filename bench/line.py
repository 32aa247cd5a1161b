"""The whole gateway under a formation hall: N conforming racks of 512 channels over Modbus (or OPC UA) at 1 s.

`linegw simulate` serves the racks in a process of its own and `linegw run` records them on the
embedded store, as on a line-side box. Once every rack is available (`connect_s`: connected, subscribed, first
values in) and after a warm-up, the gateway is sampled every few seconds (its
process, its acquisition workers and the store's encoding process, `store.compress_in: process`): values/s
written by the store, scan overruns, CPU per value (from /proc), resident memory over time (and by process), bytes on disk per value, and the latency from each value's source timestamp to a WebSocket
client of the API (one rack's voltages). Then the baseline: plain pymodbus reading the same racks, the
same requests at the same scan, into nothing, in a process of its own; its CPU per value beside the
gateway's is the ratio the performance targets are set against. Every rack count runs `--runs` times:
min, median and max. A figure for the product, not a part; run it alone on the machine.

The store seals samples into compressed chunks once they are 12 minutes old (SEAL_AFTER_S + SEAL_SPAN_S):
runs shorter than that measure the head alone. `--seconds 1200` includes a catch-up of sealing.

    .venv/bin/python bench/line.py --racks 4 8 --workers 0 2 --runs 3 --out bench/results/line.json

`--protocol opcua` runs the same racks as OPC UA servers (the spec's native profile), the gateway subscribed to every
variable at the same 1 s (publishing and sampling interval). OPC UA sends changes, not scans: the values asked are what
the servers offer, so the reference is the bare client's rate, plain asyncua subscribed to the same variables at the
same intervals into nothing (`bare.values_per_s`). Results of this kind go to their own JSON
(bench/results/line_opcua.json).

`--coaters N --winders M` add coaters and winders over OPC UA (the spec's native profile, subscribed at the same 1 s)
beside the racks: a mixed line. The bare baseline then reads the racks with pymodbus and subscribes to the others with
asyncua in one process, over one window; what the coaters and winders offer is what it got from them. Results of this
kind go to bench/results/line_mixed.json.

`--workers` sets the line's `acquisition.workers` (the racks' adapters in processes of their own); their CPU and
memory count in the gateway's, as the encoding process's do.

`--profile-s S` profiles every process of the gateway with py-spy over the first S seconds of each run's window and
splits the CPU per value by stage of the per-value path (bench/cpuprofile.py): what a CPU figure is made of. py-spy
costs the gateway a little, so such results go to their own JSON (bench/results/line_profile.json).

`bench/report.py` writes the bench README's row from the JSON; `--chart` draws memory and rate over time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import cpuprofile, opcua_peer  # noqa: E402  (the repository on the path first)
from bench.figures import machine, spread, today  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
SCAN_S = 1.0
CHANNELS = 512  # a rack's
CONNECT_LIMIT_S = 300.0  # for every rack to be available once the API answers (four OPC UA racks: about 50 s)


def tree(pid: int) -> list[int]:
    """The process and its descendants (the gateway and the store's encoding process): the whole gateway's cost."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += parents.get(p, [])
    return out


def cpu_s(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def processes(pid: int) -> dict[str, list[int]]:
    """The gateway's process tree by part: the gateway itself, its acquisition workers, the store's encoding
    process, other (multiprocessing's resource tracker)."""
    out: dict[str, list[int]] = {}
    for p in tree(pid):
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        part = ("gateway" if p == pid else "workers" if b"worker_main" in cmd
                else "encoder" if b"multiprocessing.spawn" in cmd else "other")
        out.setdefault(part, []).append(p)
    return out


def rss_by_process(pid: int) -> dict[str, float]:
    """Resident MB of the gateway's process tree by part (what grows is then visible)."""
    out: dict[str, float] = {}
    for part, pids in processes(pid).items():
        for p in pids:
            try:
                line = next(x for x in Path(f"/proc/{p}/status").read_text().splitlines() if x.startswith("VmRSS"))
            except (OSError, StopIteration):
                continue
            out[part] = round(out.get(part, 0.0) + int(line.split()[1]) / 1024, 1)
    return out


def get_health(port: int) -> dict[str, Any]:
    try:
        with urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=10) as r:
            result: dict[str, Any] = json.load(r)
            return result
    except Exception as exc:  # a 503 (degraded) still has the body
        body = getattr(exc, "read", None)
        if body is None:
            raise
        result = json.loads(body())
        return result


def adapters_sum(h: dict[str, Any], key: str) -> int:
    """A counter of the machines' adapters (their health's extra), summed over the line."""
    return sum(int(((e.get("adapter") or {}).get("extra") or {}).get(key, 0)) for e in h["equipment"].values())


def overruns(h: dict[str, Any]) -> tuple[int, int]:
    return adapters_sum(h, "overruns"), adapters_sum(h, "scans")


def all_available(port: int, racks: int, deadline: float) -> float:
    """Wait until every rack is available (connected, subscribed, its first values in); the seconds it took.

    Measuring before would count racks still connecting as values the gateway missed."""
    t0 = time.monotonic()
    while True:
        eq = get_health(port)["equipment"]
        up = [k for k, e in eq.items() if e["available"]]
        if len(up) == racks:
            return round(time.monotonic() - t0, 1)
        if time.monotonic() > deadline:
            down = {k: e["reason"] for k, e in eq.items() if not e["available"]}
            raise RuntimeError(f"{len(up)} of {racks} racks available after {time.monotonic() - t0:.0f} s: {down}")
        time.sleep(0.5)


def percentile(xs: list[float], q: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the latency client: a thread with its own loop, so that it does not sit in the sampler's way -----------------

class LatencyClient(threading.Thread):
    """Receives rack0's voltages from the API's live WebSocket and keeps (receipt - source timestamp)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"ws://127.0.0.1:{port}/api/v1/live?equipment=rack0&paths=channel[*].voltage"
        self.latencies_ms: list[float] = []
        self.recording = False
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        async with connect(self.url, max_size=None) as ws:
            while not self.stop.is_set():
                try:
                    async with asyncio.timeout(1.0):
                        text = await ws.recv()
                except TimeoutError:
                    continue
                except ConnectionClosed:  # the gateway stopping at the run's end (1012)
                    return
                now = time.time()
                msg = json.loads(text)
                if self.recording and msg.get("kind") == "samples":
                    self.latencies_ms += [1000 * (now - r["source_ts"]) for r in msg["data"]["samples"]]


# --- the bare-library baseline -------------------------------------------------------------------------------------

def rack_requests() -> tuple[list[tuple[int, int]], int]:
    """(address, count) of the requests one rack's scan makes, as the gateway's Modbus adapter plans them, and the
    values it reads."""
    from gateway.adapters.modbus import ModbusAdapter
    from gateway.bindings import binding_for
    from interface_spec import load_spec

    points = binding_for("modbus").plan(load_spec(), "rack0", "formation", "rack0", {"channel": CHANNELS}).points
    requests = ModbusAdapter("127.0.0.1:502", points).scan_requests()
    return [(r.address, r.count) for r in requests], len(points)


async def bare(modbus_ports: list[int], opcua_ports: list[int], node_ports: list[int], seconds: float,
               publishing_ms: float) -> None:
    """The child: plain pymodbus clients reading every Modbus rack at the gateway's scan, and plain asyncua clients
    subscribed to every variable of every OPC UA machine at the gateway's intervals, into nothing; prints the values
    each received over one window, and CPU seconds."""
    values = {"modbus": 0, "opcua": 0}
    scan = rack_requests()  # before the window: planning a rack's requests is no part of reading it
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        for ports, peer in ((opcua_ports, False), (node_ports, True)):
            if ports:
                subscribed = asyncio.Event()
                tg.create_task(_subscribe_opcua(ports, values, subscribed, stop, publishing_ms, peer))
                await subscribed.wait()
        if opcua_ports or node_ports:
            await asyncio.sleep(5)  # the initial values of every item are past
        v0, c0 = dict(values), time.process_time()
        stop_at = asyncio.get_running_loop().time() + seconds
        await asyncio.gather(asyncio.sleep(seconds), *(_scan_rack(p, scan, stop_at, values) for p in modbus_ports))
        v1, c1 = dict(values), time.process_time()
        stop.set()
    got = {k: v1[k] - v0[k] for k in values}
    print(json.dumps({"values": sum(got.values()), "modbus_values": got["modbus"], "opcua_values": got["opcua"],
                      "cpu_s": c1 - c0, "seconds": seconds}))


async def _scan_rack(port: int, scan: tuple[list[tuple[int, int]], int], stop_at: float,
                     values: dict[str, int]) -> None:
    from pymodbus.client import AsyncModbusTcpClient

    requests, per_scan = scan
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
    await client.connect()
    loop = asyncio.get_running_loop()
    try:
        next_scan = loop.time()
        while next_scan < stop_at:
            for address, count in requests:
                rr = await client.read_holding_registers(address, count=count, device_id=1)
                if rr.isError():
                    raise RuntimeError(f"rack at {port}: {rr}")
            values["modbus"] += per_scan
            next_scan += SCAN_S
            await asyncio.sleep(max(0.0, next_scan - loop.time()))
    finally:
        client.close()


async def _subscribe_opcua(ports: list[int], values: dict[str, int], subscribed: asyncio.Event,
                           stop: asyncio.Event, publishing_ms: float, peer: bool = False) -> None:
    from asyncua import Client, ua

    from interface_spec import load_spec

    folder = load_spec().core.opcua.machines_folder
    node_ids = opcua_peer.read_nodes(CHANNELS) if peer else None
    peer_namespace = opcua_peer.namespace() if peer else ""
    pending = [len(ports)]

    async def machine_variables(client: Any) -> list[Any]:
        if node_ids is not None:  # a node peer's rack: what the gateway reads through the dialect's mapping
            ns = await client.get_namespace_index(peer_namespace)
            return [client.get_node(ua.NodeId(nid, ns)) for nid in node_ids]
        (machines,) = [n for n in await client.nodes.objects.get_children() if (await n.read_browse_name()).Name == folder]
        (root,) = await machines.get_children()  # the machine's object
        variables = []
        for sub in await root.get_children(nodeclassmask=ua.NodeClass.Object):
            variables += await sub.get_children(nodeclassmask=ua.NodeClass.Variable)
        return variables

    class Handler:
        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            dv = data.monitored_item.Value  # what a client keeps of each: value and source time
            _ = (node.nodeid, val, dv.SourceTimestamp or dv.ServerTimestamp)
            values["opcua"] += 1

    one_at_a_time = asyncio.Lock()  # the servers share a process: subscribing all at once timed them out

    async def one(port: int) -> None:
        url = f"opc.tcp://127.0.0.1:{port}" + (opcua_peer.RackServer.PATH if peer else "")
        client = Client(url, timeout=60, watchdog_intervall=10.0)
        async with one_at_a_time:
            await client.connect()
            variables = await machine_variables(client)
            sub_ = await client.create_subscription(publishing_ms, Handler())
            for k in range(0, len(variables), 1000):
                await sub_.subscribe_data_change(variables[k:k + 1000], queuesize=1, sampling_interval=SCAN_S * 1000)
        try:
            pending[0] -= 1
            if not pending[0]:
                subscribed.set()
            await stop.wait()
        finally:
            await client.disconnect()

    async with asyncio.TaskGroup() as tg:
        for p in ports:
            tg.create_task(one(p))


# --- one run ---------------------------------------------------------------------------------------------------------

def machines(racks: int, a: argparse.Namespace) -> list[tuple[str, str, str, int]]:
    """(id, class, protocol, port) of every machine of the line: the racks over --protocol, then the coaters and
    winders over OPC UA."""
    out = [(f"rack{i}", "formation", a.protocol, a.first_port + i) for i in range(racks)]
    for cls, n in (("coater", a.coaters), ("winder", a.winders)):
        out += [(f"{cls}{i}", cls, "opcua", a.first_port + len(out) + i) for i in range(n)]
    return out


def node_peer(a: argparse.Namespace, cls: str, protocol: str) -> bool:
    """Whether a machine of the line is a rack served by the node peer (--rack-server node)."""
    return a.rack_server == "node" and cls == "formation" and protocol == "opcua"


def one_run(racks: int, workers: int, a: argparse.Namespace, run: int, per_scan: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="linegw-bench-"))
    db = tmp / "line.sqlite"
    line_machines = machines(racks, a)
    ms = int(SCAN_S * 1000)
    settings = {"modbus": ("modbus://127.0.0.1:{}", f"{{scan_interval_ms: {ms}}}"),
                # A saturated simulators' process answers the session's first requests (resolving
                # thousands of browse paths, creating the monitored items) in more than the default 5 s:
                # the bare client waits 60 s, and so does the gateway here.
                "opcua": ("opc.tcp://127.0.0.1:{}",
                          f"{{publishing_interval_ms: {a.publishing_ms:g}, sampling_ms: {ms}, request_timeout_s: 60}}")}
    peer_ports = [port for _, cls, protocol, port in line_machines if node_peer(a, cls, protocol)]

    def entry(i: int, mid: str, cls: str, protocol: str, port: int) -> str:
        head = f"  - id: {mid}\n    class: {cls}\n    protocol: {protocol}\n"
        counts = f"    counts: {{channel: {CHANNELS}}}\n" if cls == "formation" else ""
        adapter = f"    adapter: {settings[protocol][1]}\n"
        if port in peer_ports:  # served by the node peer in its vendor's dialect, read through that mapping
            return (head + f"    endpoint: opc.tcp://127.0.0.1:{port}{opcua_peer.RackServer.PATH}\n"
                    f"    mapping: {opcua_peer.RACK_DIALECT}\n" + counts + adapter.rstrip("\n"))
        return (head + f"    endpoint: {settings[protocol][0].format(port)}\n" + counts + adapter
                + f"    simulate: {{seed: {i}, time_scale: {a.time_scale:g}}}")
    eq = "\n".join(entry(i, *m) for i, m in enumerate(line_machines))
    line = tmp / "line.yaml"
    line.write_text(f"line: bench\napi: {{host: 127.0.0.1, port: {a.api_port}}}\n"
                    f"store: {{path: {db}, compress_in: {a.compress_in}}}\n"
                    f"acquisition: {{workers: {workers}}}\n"
                    f"equipment:\n{eq}\n")
    servers: list[subprocess.Popen[bytes]] = []  # the machines' processes: the node peer's, the simulators'
    try:
        return measured(racks, workers, a, run, per_scan, tmp, line, line_machines, peer_ports, servers)
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)


def measured(racks: int, workers: int, a: argparse.Namespace, run: int, per_scan: int, tmp: Path, line: Path,
             line_machines: list[tuple[str, str, str, int]], peer_ports: list[int],
             servers: list[subprocess.Popen[bytes]]) -> dict[str, Any]:
    """One run of a line file: its machines served (into `servers`), the gateway measured, then the baseline."""
    cmd = [sys.executable, "-m", "gateway.cli"]
    if peer_ports:
        servers.append(opcua_peer.RackServer(peer_ports, CHANNELS, int(SCAN_S * 1000), tmp).start())
    if len(peer_ports) < len(line_machines):
        servers.append(subprocess.Popen(cmd + ["simulate", str(line)], cwd=ROOT, stdout=subprocess.DEVNULL))
        time.sleep(5)
    gw = subprocess.Popen(cmd + ["run", str(line)], cwd=ROOT, stdout=subprocess.DEVNULL)
    client = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get_health(a.api_port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        connect_s = all_available(a.api_port, len(line_machines), time.monotonic() + CONNECT_LIMIT_S)
        client = LatencyClient(a.api_port)
        client.start()
        time.sleep(a.warmup)
        client.recording = True
        h0, c0, t0 = get_health(a.api_port), cpu_s(gw.pid), time.monotonic()
        sim0 = sum(cpu_s(p.pid) for p in servers)
        profile: dict[str, Any] = {}

        def profile_now() -> None:  # the processes there at the window's start (the encoder once it runs)
            try:
                profile.update(cpuprofile.record({part: pids for part, pids in processes(gw.pid).items()
                                                  if part != "other"}, min(a.profile_s, a.seconds)))
            except Exception as exc:  # said after the window: a run asked to profile does not end without one
                profile["failed"] = f"{type(exc).__name__}: {exc}"
        profiler = threading.Thread(target=profile_now)
        if a.profile_s:
            profiler.start()
        series = []
        last_written, last_t, seen = h0["store"]["written"], t0, 0
        while (now := time.monotonic()) < t0 + a.seconds:
            time.sleep(min(a.sample_s, t0 + a.seconds - now))
            h, t = get_health(a.api_port), time.monotonic()
            (o, n) = overruns(h)
            parts = rss_by_process(gw.pid)
            window = client.latencies_ms[seen:]  # what the WebSocket client got since the last sample
            seen += len(window)
            series.append({"t_s": round(t - t0, 1), "rss_mb": round(sum(parts.values()), 1), "rss_parts_mb": parts,
                           "values_per_s": round((h["store"]["written"] - last_written) / (t - last_t)),
                           "overruns": o, "scans": n, "sealed": h["store"].get("sealed_samples", 0),
                           "cpu_s": round(cpu_s(gw.pid), 1),
                           # when latency rises: beside the sealing, the event loop's worst lag and the collector
                           "latency_p99_ms": round(percentile(window, 0.99), 1) if window else None,
                           "loop_lag_max_1m_ms": h["runtime"]["loop_lag"]["max_1m_ms"], "gc": h["runtime"]["gc"],
                           "store_queued": h["store"].get("queued"), "last_batch_ms": h["store"].get("last_batch_ms")})
            last_written, last_t = h["store"]["written"], t
        h1, c1, t1 = get_health(a.api_port), cpu_s(gw.pid), time.monotonic()
        sim1 = sum(cpu_s(p.pid) for p in servers)
        if a.profile_s:
            profiler.join()
            if "failed" in profile:
                raise RuntimeError(f"the profile failed: {profile['failed']}")
        client.recording = False
        written = h1["store"]["written"] - h0["store"]["written"]
        (o0, s0), (o1, s1) = overruns(h0), overruns(h1)
        size = sum(p.stat().st_size for p in tmp.glob("line.sqlite*"))
        lat = client.latencies_ms
        out: dict[str, Any] = {
            "racks": racks, "workers": workers, "run": run, "connect_s": connect_s, "seconds": round(t1 - t0, 1), "values_per_s": round(written / (t1 - t0)),
            "asked_values_per_s": None, "cpu_pct": round(100 * (c1 - c0) / (t1 - t0), 1),
            "simulators_cpu_pct": round(100 * (sim1 - sim0) / (t1 - t0), 1),  # on the same cores
            "cpu_us_per_value": round(1e6 * (c1 - c0) / max(written, 1), 2),
            "scans": s1 - s0, "overruns": o1 - o0, "sealed_samples": h1["store"].get("sealed_samples", 0),
            "store_dropped": h1["store"]["dropped"] - h0["store"]["dropped"],  # samples the store's queue refused
            # OPC UA: notifications the adapters received, and readings their delivery queues could not hold
            "notifications": adapters_sum(h1, "notifications") - adapters_sum(h0, "notifications"),
            "adapter_overflow": adapters_sum(h1, "overflow") - adapters_sum(h0, "overflow"),
            "compact_errors": h1["store"].get("compact_errors", 0),
            "bytes_per_value_on_disk": round(size / max(h1["store"]["written"], 1), 1),
            "rss_mb": series[-1]["rss_mb"], "rss_series": series, "status": h1["status"],
            "latency_ms": {"samples": len(lat), "p50": round(percentile(lat, 0.5), 1) if lat else None,
                           "p99": round(percentile(lat, 0.99), 1) if lat else None},
        }
        if profile:
            # What each stage costs per value: its share of the samples of the whole gateway's CPU per value.
            profile["us_per_value"] = {stage: round(share * out["cpu_us_per_value"], 2)
                                       for stage, share in profile["share"].items()}
            out["profile"] = profile
    finally:
        if client is not None:
            client.stop.set()
        gw.send_signal(signal.SIGTERM)
        gw.wait(timeout=60)
    ports = {p: ",".join(str(port) for _, _, protocol, port in line_machines
                         if protocol == p and port not in peer_ports) for p in ("modbus", "opcua")}
    proc = subprocess.run([sys.executable, __file__, "--bare", ports["modbus"], "--bare-opcua", ports["opcua"],
                           "--bare-node", ",".join(map(str, peer_ports)), "--publishing-ms", str(a.publishing_ms),
                           "--seconds", str(a.bare_seconds)], cwd=ROOT, capture_output=True, text=True,
                          timeout=a.bare_seconds + 180 + 30 * len(line_machines))  # subscribed one at a time
    if proc.returncode != 0:
        raise RuntimeError(f"the bare baseline failed: {proc.stderr[-2000:]}")
    b = json.loads(proc.stdout.strip().splitlines()[-1])
    out["bare"] = {"values_per_s": round(b["values"] / b["seconds"]),
                   "cpu_us_per_value": round(1e6 * b["cpu_s"] / max(b["values"], 1), 2),
                   "modbus_values_per_s": round(b["modbus_values"] / b["seconds"]),
                   "opcua_values_per_s": round(b["opcua_values"] / b["seconds"])}
    # Modbus: what the scans ask for. OPC UA: what the servers offer, as the bare client received it.
    modbus_racks = racks if a.protocol == "modbus" else 0
    out["asked_values_per_s"] = round(modbus_racks * per_scan / SCAN_S) + out["bare"]["opcua_values_per_s"]
    out["coaters"], out["winders"] = a.coaters, a.winders
    out["cpu_vs_bare"] = round(out["cpu_us_per_value"] / max(out["bare"]["cpu_us_per_value"], 1e-9), 2)
    print(json.dumps({k: v for k, v in out.items() if k != "rss_series"}), flush=True)
    return out


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def col(f: Any) -> dict[str, float]:
        return spread([float(f(r)) for r in runs])
    return {
        "values_per_s": col(lambda r: r["values_per_s"]),
        "connect_s": col(lambda r: r["connect_s"]),
        "asked_values_per_s": round(col(lambda r: r["asked_values_per_s"])["median"]),  # OPC UA: varies per run
        "overruns": col(lambda r: r["overruns"]), "scans": col(lambda r: r["scans"]),
        "adapter_overflow": col(lambda r: r.get("adapter_overflow", 0)),
        "cpu_pct": col(lambda r: r["cpu_pct"]), "cpu_us_per_value": col(lambda r: r["cpu_us_per_value"]),
        "bare_cpu_us_per_value": col(lambda r: r["bare"]["cpu_us_per_value"]),
        "cpu_vs_bare": col(lambda r: r["cpu_vs_bare"]),
        "rss_mb": col(lambda r: r["rss_mb"]),
        "rss_growth_mb": col(lambda r: r["rss_series"][-1]["rss_mb"] - r["rss_series"][0]["rss_mb"]),
        "bytes_per_value_on_disk": col(lambda r: r["bytes_per_value_on_disk"]),
        "latency_p50_ms": col(lambda r: r["latency_ms"]["p50"] or 0), "latency_p99_ms": col(lambda r: r["latency_ms"]["p99"] or 0),
    }


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, rate) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for racks, cfg in result["configs"].items():
        for r in cfg["runs"]:
            t = [p["t_s"] for p in r["rss_series"]]
            workers = cfg.get("workers", 0)
            label = (f"{cfg.get('racks', racks)} racks" + (f", {workers} acquisition workers" if workers else "")
                     if r["run"] == 1 else None)
            mem.plot(t, [p["rss_mb"] for p in r["rss_series"]], color=f"C{list(result['configs']).index(racks)}", label=label)
            rate.plot(t, [p["values_per_s"] for p in r["rss_series"]], color=f"C{list(result['configs']).index(racks)}")
    mem.set_ylabel("gateway RSS (MB)")
    rate.set_ylabel("values stored per s")
    rate.set_xlabel("seconds after the warm-up")
    mem.legend()
    over = {"modbus": "Modbus", "opcua": "OPC UA"}[result.get("protocol", "modbus")]
    fig.suptitle(f"bench/line.py: formation racks over {over}, linegw run on the embedded store")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--racks", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=20.0)
    ap.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples of memory and rate")
    ap.add_argument("--bare-seconds", type=float, default=20.0)
    ap.add_argument("--api-port", type=int, default=18480)
    ap.add_argument("--first-port", type=int, default=15300)
    ap.add_argument("--compress-in", choices=["process", "thread"], default="process",
                    help="the store's compress_in: where sealed samples are compressed (default: the gateway's)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0],
                    help="acquisition workers: processes that run the racks' adapters (0, the default: in the "
                         "gateway's); several values are run as configurations of their own, like --racks")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--chart", type=Path, help="draw memory and rate over time as PNG here")
    ap.add_argument("--time-scale", type=float, default=1.0,
                    help="the racks' simulated time per wall second: 1 is a hall in real time (a tray of 512 cells "
                         "ends every few hours, its 512 cell events drained over Modbus then); 600 ends one every "
                         "~17 s per rack, 600 times a real hall's event load on the racks' connections")
    ap.add_argument("--add-to", type=Path, help="keep the result under --label in this JSON of labelled runs "
                                                "(bench/results/line_sealing.json: the README's long runs)")
    ap.add_argument("--label", help="what the run is, for --add-to")
    ap.add_argument("--protocol", choices=["modbus", "opcua"], default="modbus",
                    help="how the racks are read: Modbus scans (default) or OPC UA subscriptions")
    ap.add_argument("--rack-server", choices=["simulator", "node"], default="simulator",
                    help="with --protocol opcua, what serves the racks: the simulators (asyncua, the spec's native "
                         "profile) or node-opcua in a vendor's dialect (bench/opcua_peer.py), to load the gateway "
                         "past what the simulators' process can send")
    ap.add_argument("--publishing-ms", type=float, default=SCAN_S * 1000,
                    help="the OPC UA subscriptions' publishing interval (default: the scan's); sampling stays at the "
                         "scan's, or the spec's where a variable has its own")
    ap.add_argument("--coaters", type=int, default=0, help="coaters over OPC UA (the spec's native profile) beside "
                                                           "the racks: a mixed line")
    ap.add_argument("--winders", type=int, default=0, help="winders over OPC UA beside the racks")
    ap.add_argument("--profile-s", type=float, default=0.0,
                    help="profile every process of the gateway with py-spy for this many seconds from the start of "
                         "each run's window, by stage of the per-value path (bench/cpuprofile.py)")
    ap.add_argument("--bare", help=argparse.SUPPRESS)  # the baseline's child process: its Modbus racks' ports
    ap.add_argument("--bare-opcua", default="", help=argparse.SUPPRESS)  # ... and its OPC UA machines' ports
    ap.add_argument("--bare-node", default="", help=argparse.SUPPRESS)  # ... and the node peer's racks' ports
    a = ap.parse_args()
    if a.bare is not None:
        modbus, opcua, node = ([int(p) for p in ports.split(",") if p] for ports in (a.bare, a.bare_opcua, a.bare_node))
        asyncio.run(bare(modbus, opcua, node, a.seconds, a.publishing_ms))
        return
    if a.rack_server == "node" and a.protocol != "opcua":
        ap.error("--rack-server node serves OPC UA racks: give --protocol opcua")
    mixed = bool(a.coaters or a.winders)
    # bench/report.py's row
    script = "line.py (mixed line)" if mixed else "line.py" if a.protocol == "modbus" else f"line.py --protocol {a.protocol}"
    script += " --rack-server node" if a.rack_server == "node" else ""
    script += " (profiled)" if a.profile_s else ""  # results of their own: py-spy costs the gateway a little
    configs_out: dict[str, Any] = {}
    result: dict[str, Any] = {"script": script, "measured": today(), "configs": configs_out,
                              "machine": machine(),
                              "seconds": a.seconds, "warmup_s": a.warmup, "scan_s": SCAN_S,
                              "compress_in": a.compress_in, "time_scale": a.time_scale, "workers": a.workers,
                              "protocol": a.protocol, "rack_server": a.rack_server,
                              "publishing_ms": a.publishing_ms, "coaters": a.coaters,
                              "winders": a.winders}
    per_scan = rack_requests()[1]  # values one rack's scan asks for
    others = "".join(f" + {n} {cls}s" for cls, n in (("coater", a.coaters), ("winder", a.winders)) if n)
    configs = {(f"{racks}{others}" if w == 0 else f"{racks}{others} ({w} acquisition workers)"): (racks, w)
               for racks in a.racks for w in a.workers}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for i in range(a.runs):  # configurations in turn, run after run: a machine whose speed drifts hits them alike
        for name, (racks, w) in configs.items():
            runs[name].append(one_run(racks, w, a, i + 1, per_scan))
    for name, (racks, w) in configs.items():
        configs_out[name] = {"racks": racks, "workers": w, "coaters": a.coaters, "winders": a.winders,
                                   "runs": runs[name], "summary": summary(runs[name])}
    if a.out:
        a.out.write_text(json.dumps(result, indent=1))
    if a.add_to:
        kept: dict[str, Any] = (json.loads(a.add_to.read_text()) if a.add_to.exists()
                                 else {"script": "line_sealing", "runs": {}})
        kept["runs"][a.label or f"{'+'.join(map(str, a.racks))} racks"] = result
        a.add_to.write_text(json.dumps(kept, indent=1) + "\n")
    if a.chart:
        chart(result, a.chart)
    for name, cfg in result["configs"].items():
        print(name, "racks:", json.dumps(cfg["summary"]))


if __name__ == "__main__":
    main()
