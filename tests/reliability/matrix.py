"""The fault matrix: each row one fault of a real simulator, switched on and off under a running gateway.

Per row a simulated machine (a real OPC UA or Modbus server) is read by the gateway's line runtime into
a real store. The fault is switched on once the line is settled, off once the gateway has seen it (or
after a few seconds when it is one the gateway should ride out), and the row measures:

* detected: seconds from the fault to the gateway showing it (the machine unavailable, or its
  heartbeat no longer GOOD); "-" when the gateway rode it out without an outage
* recovered: seconds from the fault's end (a restarted server listening again) to GOOD data again
  (the heartbeat moving, GOOD); "-" when there was no outage
* events lost: events the machine kept in its ring (seq numbers) that the store lacks; must be 0
* duplicates: history rows stored twice (same path and source time) plus events stored twice; must be 0
* gap: the longest stretch without a stored heartbeat, in seconds (values are read, not kept by the
  machine: what is not read during an outage is not there to lose)

The store's rows switch a fault of the gateway's store file instead (a full disk, a read-only file): detected
when its commits fail, recovered when everything it held in memory is committed. They run one after the other
in a process of their own, since a file size limit holds for a whole process.

`python -m tests.reliability.matrix` runs every row one after the other and prints the table (and
writes it as JSON with `--out`); `make fault-matrix` does that into bench/results/. The suite runs the
same rows side by side (tests/reliability/test_fault_matrix.py), asserting what must hold.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway.adapters.opcua.security import certificates, move
from gateway.config import LineConfig
from gateway.runtime.line import LineRuntime
from gateway.samples import Quality
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from simulators.line import SimConfig, SimLine
from simulators.servers.opcua_server import OpcUaSecurity
from simulators.simulator import Simulator

EQ = "m1"
ROOT = Path(__file__).resolve().parents[2]
ADAPTER = {"modbus": {"scan_interval_ms": 200, "timeout_s": 2.0, "backoff_max_s": 1.0},
           "opcua": {"publishing_interval_ms": 200, "request_timeout_s": 2.0, "backoff_max_s": 1.0}}
Switch = Callable[[Simulator], Awaitable[None]]


@dataclass(frozen=True)
class Fault:
    name: str
    protocol: str
    on: Switch
    off: Switch
    outage: bool  # the gateway must show it (else it must ride it out)
    hold_s: float = 3.0  # how long a ridden-out fault stays on
    held_s: float = 0.0  # how long a shown fault stays on after the gateway showed it
    secure: bool = False  # OPC UA under SignAndEncrypt, the server's certificate trusted on first use
    engineer: Callable[[Path], None] | None = None  # what an engineer does to end it, given the gateway's PKI folder
    store: Callable[[Path, bool], None] | None = None  # a fault of the gateway's store file, switched on and off


@dataclass
class Row:
    fault: str
    protocol: str
    detected_s: float | None
    recovered_s: float | None
    events_lost: int
    duplicates: int
    gap_s: float
    events: int  # events the machine made during the row
    shown: str = ""  # what the gateway said: the machine's link reason, or its heartbeat's, at the fault's end
    twice: str = ""  # the first few rows stored twice (path, source time, value, when each copy was stored)

    def cells(self) -> list[str]:
        def secs(x: float | None) -> str:
            return "-" if x is None else f"{x:.2f}"
        return [self.fault, self.protocol, secs(self.detected_s), secs(self.recovered_s), str(self.events_lost),
                str(self.duplicates), f"{self.gap_s:.1f}", str(self.events)]


async def _nothing(sim: Simulator) -> None:
    return None


def _call(fn: Callable[[Simulator], Any]) -> Switch:
    async def switch(sim: Simulator) -> None:
        result = fn(sim)
        if asyncio.iscoroutine(result):
            await result
    return switch


def _exception(code: str) -> Fault:
    def off(sim: Simulator) -> None:
        sim.binding.server.faults.exception_addresses.clear()  # type: ignore[attr-defined]  # a Modbus simulator's server
    return Fault(f"Modbus exception {code} on every register", "modbus", _call(lambda s: s.faults.exception("*", code)),
                 _call(off), outage=True)


def _unlimited(sim: Simulator) -> Awaitable[None]:
    return sim.faults.limits(None, None)


def _trust_the_rejected(pki: Path) -> None:
    """The engineer accepts the certificate the gateway refused, as `linegw certs trust` does."""
    (refused,) = [c for c in certificates(pki) if c.status == "rejected"]
    move(pki, refused.thumbprint, "trusted")


def _full_then_dropped(sim: Simulator) -> None:
    """The server takes no more sessions than it holds, then the gateway's connection drops: its session, which
    keeps subscriptions, stays on the server until it times out, so the reconnect is refused."""
    sim.faults.session_limit(sim.faults.sessions())
    sim.faults.drop_connections()


def _second_client() -> Fault:
    """Another gateway reading the same Modbus machine, its own store, while the first reads on: the events
    mailbox is one window for all clients, and neither may tear the other's reads."""
    others: dict[int, tuple[LineRuntime, asyncio.Task[None], SqliteStore]] = {}

    async def on(sim: Simulator) -> None:
        store = SqliteStore(Path(tempfile.mkdtemp()) / "second.sqlite")
        await store.start()
        cfg = LineConfig.model_validate({"line": "second", "equipment": [{
            "id": EQ, "class": "winder", "protocol": "modbus", "endpoint": sim.url, "adapter": ADAPTER["modbus"]}]})
        runtime = LineRuntime(cfg, load_spec(), store)
        others[id(sim)] = (runtime, asyncio.create_task(runtime.run()), store)

    async def off(sim: Simulator) -> None:
        _, task, store = others.pop(id(sim))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()

    return Fault("A second gateway reading the same Modbus machine", "modbus", on, off, outage=False, hold_s=6.0)


FAULTS: list[Fault] = [
    Fault("Modbus device dead (port refused)", "modbus",
          _call(lambda s: (s.faults.refuse(True), s.faults.drop_connections())), _call(lambda s: s.faults.refuse(False)),
          outage=True),
    Fault("Modbus device slow (0.3 s a reply)", "modbus", _call(lambda s: s.faults.slow(0.3)),
          _call(lambda s: s.faults.slow(0)), outage=False),
    Fault("Modbus device slower than the timeout (5 s)", "modbus", _call(lambda s: s.faults.slow(5.0)),
          _call(lambda s: s.faults.slow(0)), outage=True),
    _exception("illegal_address"),
    _exception("device_failure"),
    _exception("device_busy"),
    _exception("gateway_target_failed"),
    Fault("Modbus replies garbage (bytes that are no frame)", "modbus", _call(lambda s: s.faults.replies("garbage")),
          _call(lambda s: s.faults.replies("ok")), outage=True),
    Fault("Modbus replies under another transaction id", "modbus", _call(lambda s: s.faults.replies("foreign_tid")),
          _call(lambda s: s.faults.replies("ok")), outage=True),
    Fault("Modbus connection dropped", "modbus", _call(lambda s: s.faults.drop_connections()), _nothing,
          outage=False, hold_s=2.0),
    Fault("Modbus server restart (2 s down)", "modbus", _call(lambda s: s.faults.restart(downtime_s=2.0)), _nothing,
          outage=True),
    _second_client(),
    Fault("OPC UA server restart, same namespaces (2 s down)", "opcua",
          _call(lambda s: s.faults.restart(shift_namespace=False, downtime_s=2.0)), _nothing, outage=True),
    Fault("OPC UA server restart, namespaces renumbered", "opcua",
          _call(lambda s: s.faults.restart(shift_namespace=True, downtime_s=2.0)), _nothing, outage=True),
    Fault("OPC UA connection dropped", "opcua", _call(lambda s: s.faults.drop_connections()), _nothing,
          outage=False, hold_s=2.0),
    Fault("OPC UA operation limits (BadTooManyOperations past 4 nodes)", "opcua",
          _call(lambda s: s.faults.limits(4, 4)), _unlimited, outage=False),
    Fault("OPC UA session limit reached (the dropped session still held)", "opcua", _call(_full_then_dropped),
          _call(lambda s: s.faults.session_limit(None)), outage=True, held_s=3.0),
    # Refused until an engineer accepts the new certificate: recovered is from their `linegw certs trust`.
    Fault("OPC UA server certificate changed (restart with a new one, SignAndEncrypt)", "opcua",
          _call(lambda s: s.faults.restart(shift_namespace=False, downtime_s=1.0, new_certificate=True)), _nothing,
          outage=True, held_s=2.0, secure=True, engineer=_trust_the_rejected),
    # Never switched off: the silenced subscription stays silent, and only the gateway subscribing anew heals it.
    Fault("OPC UA subscription silent (keep-alives, no data changes)", "opcua", _call(lambda s: s.faults.silence()),
          _nothing, outage=True),
    Fault("Machine frozen (heartbeat stops, link up)", "opcua", _call(lambda s: s.faults.freeze()),
          _call(lambda s: s.faults.unfreeze()), outage=True),
]


def _disk_full(path: Path, on: bool) -> None:
    """Every write to a file refused as a full disk refuses it: a file size limit of one byte (SIGXFSZ is ignored,
    as CPython does). It holds for the whole process: these rows run one at a time, in a process of their own."""
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 if on else hard, hard))


def _read_only(path: Path, on: bool) -> None:
    """The database and its WAL immutable (`chattr +i`, which stops root too, where chmod would not)."""
    if shutil.which("chattr") is None or os.geteuid() != 0:
        raise AssertionError("the read-only store row needs root and chattr (e2fsprogs)")
    for f in (path, Path(f"{path}-wal")):
        subprocess.run(["chattr", "+i" if on else "-i", str(f)], check=on, capture_output=True)


# The store's own faults, under a Modbus winder: the machine stays up, the gateway holds what it reads in memory
# (and, when that is full, leaves the events in the machine's ring) and catches up when the disk takes writes again.
STORE_FAULTS: list[Fault] = [
    Fault("Store disk full (every write refused)", "modbus", _nothing, _nothing, outage=True, held_s=3.0,
          store=_disk_full),
    Fault("Store read-only (database and WAL immutable)", "modbus", _nothing, _nothing, outage=True, held_s=3.0,
          store=_read_only),
]


def _outage(runtime: LineRuntime) -> bool:
    view = runtime.get(EQ)
    hb = runtime.devices[EQ].latest.get("status.heartbeat")
    return view is None or not view.available or hb is None or hb.quality != Quality.GOOD


def _shown(runtime: LineRuntime) -> str:
    """What the gateway says of the fault now: the link's current reason (the adapter's health has it; the
    machine's view keeps the reason its outage began with), or the machine's, or its heartbeat's."""
    dev, view = runtime.devices[EQ], runtime.get(EQ)
    if view is not None and not view.available:
        link = dev.adapter.health() if dev.adapter is not None else None
        return (link.last_error if link is not None and not link.connected and link.last_error else view.link_reason)
    hb = dev.latest.get("status.heartbeat")
    return hb.reason if hb is not None else ""


async def until(predicate: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until predicate() holds, polled every 20 ms; None past the timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    return None


def count_events(first: int, last: int, stored: list[int]) -> tuple[int, int]:
    """(events the machine made, first..last, that the store lacks; events stored more than once)."""
    if last < first - 1:
        raise ValueError(f"no events between seq {first} and {last}")
    lost = len(set(range(first, last + 1)) - set(stored))
    return lost, sum(n - 1 for n in collections.Counter(stored).values() if n > 1)


async def run_row(fault: Fault, folder: Path, seed: int = 5) -> Row:
    """One fault against a fresh winder (many events) and a fresh store."""
    sims = SimLine()
    security = OpcUaSecurity(modes=["SignAndEncrypt"]) if fault.secure else None
    await sims.start([SimConfig(EQ, "winder", fault.protocol, port=0, seed=seed, time_scale=30, security=security)])
    sim = sims.simulators[EQ]
    own = Path(tempfile.mkdtemp(dir=folder))  # a store and a PKI folder of its own per row
    store_path = own / "store.sqlite"
    store = SqliteStore(store_path)
    await store.start()
    entry: dict[str, Any] = {"id": EQ, "class": "winder", "protocol": fault.protocol, "endpoint": sims.endpoints()[EQ],
                             "adapter": ADAPTER[fault.protocol]}
    if fault.secure:
        entry["security"] = {"mode": "SignAndEncrypt", "policy": "Basic256Sha256", "certificate_dir": str(own / "pki")}
    cfg = LineConfig.model_validate({"line": "faults", "equipment": [entry]})
    runtime = LineRuntime(cfg, load_spec(), store)
    task = asyncio.create_task(runtime.run())
    try:
        start = time.time()
        first_seq = sim.machine.last_seq + 1
        if await until(lambda: not _outage(runtime), 30) is None:
            raise AssertionError(f"{fault.name}: the line never settled")
        await asyncio.sleep(1.0)
        if fault.store is not None:
            fault.store(store_path, True)

        def faulty() -> bool:  # what the gateway shows: the machine's outage, or its store failing
            return store.stats()["failing_since"] is not None if fault.store is not None else _outage(runtime)

        switching = asyncio.create_task(fault.on(sim))  # a restart's downtime passes inside it
        detected = await until(faulty, 12 if fault.outage else fault.hold_s)
        if detected is None and fault.outage:
            raise AssertionError(f"{fault.name}: the gateway never showed the fault")
        await switching
        if detected is None:
            await asyncio.sleep(fault.hold_s)  # ridden out so far: keep it on a while longer
        else:
            await asyncio.sleep(fault.held_s)
        shown = "" if detected is None else store.stats()["last_error"] if fault.store is not None else _shown(runtime)
        await fault.off(sim)
        if fault.store is not None:
            fault.store(store_path, False)
        if fault.engineer is not None:
            fault.engineer(own / "pki")
        moved_from = sim.machine.values.get("status.heartbeat")

        def recovered_now() -> bool:
            if fault.store is not None:  # every sample it held committed
                st = store.stats()
                return st["failing_since"] is None and st["held"] == 0
            hb = runtime.devices[EQ].latest.get("status.heartbeat")
            return not _outage(runtime) and hb is not None and hb.value != moved_from

        recovered = await until(recovered_now, 30)
        if recovered is None:
            raise AssertionError(f"{fault.name}: no GOOD data within 30 s of the fault's end")
        last_seq = sim.machine.last_seq
        deadline = time.monotonic() + 15  # events made during the outage are read back from the machine's ring
        while True:
            await store.flush()
            events = await store.events(EQ, start=start - 60, limit=100_000)
            seqs = [e["seq"] for e in events if e.get("seq") is not None]
            if max(seqs, default=0) >= last_seq or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        lost, dup_events = count_events(first_seq, last_seq, seqs)
        dup_rows, twice = 0, []
        for _, path, _ in await store.series(EQ):
            rows = await store.history(EQ, path, 0, time.time() + 3600, limit=1_000_000)
            counts = collections.Counter(r["ts"] for r in rows)
            dup_rows += sum(n - 1 for n in counts.values() if n > 1)
            copies = [r for r in rows if counts[r["ts"]] > 1]
            if copies and len(twice) < 3:
                twice.append(f"{path} @{copies[0]['ts']:.3f} = {copies[0]['value']!r}, stored at "
                             + ", ".join(f"{r['gateway_ts']:.3f}" for r in copies if r["ts"] == copies[0]["ts"]))
        beats = sorted(r["ts"] for r in await store.history(EQ, "status.heartbeat", start, time.time() + 60,
                                                            limit=1_000_000))
        gap = max((b - a for a, b in zip(beats, beats[1:])), default=0.0)
        return Row(fault.name, fault.protocol, detected, recovered if detected is not None else None, lost,
                   dup_rows + dup_events, gap, last_seq - first_seq + 1, shown, "; ".join(twice))
    finally:
        if fault.store is not None:
            fault.store(store_path, False)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
        await sims.stop()


def table(rows: list[Row]) -> str:
    head = ["fault", "protocol", "detected (s)", "recovered (s)", "events lost", "duplicates", "longest gap (s)",
            "events made"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


async def run_all(folder: Path, side_by_side: int = 1) -> list[Row]:
    """Every row, `side_by_side` at a time (1: the figures of one fault alone on the machine)."""
    gate = asyncio.Semaphore(side_by_side)

    async def one(fault: Fault) -> Row:
        async with gate:
            return await run_row(fault, folder)

    return list(await asyncio.gather(*(one(f) for f in FAULTS)))


async def run_store_rows(folder: Path) -> list[Row]:
    """The store's rows, one after the other in a process of their own: a file size limit holds for a whole process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.reliability.matrix", "--store-rows", str(folder), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    if proc.returncode != 0:
        raise AssertionError(f"the store rows' process ended with {proc.returncode}: {err.decode()[-3000:]}")
    return [Row(**r) for r in json.loads(out.decode().strip().splitlines()[-1])]


async def _store_rows(folder: Path) -> None:
    rows = [await run_row(fault, folder) for fault in STORE_FAULTS]
    print(json.dumps([asdict(r) for r in rows]))


async def _main(out: Path | None) -> None:
    from tests.reliability.sinks import run_sinks, sink_table  # the sink rows need victoria-metrics and nginx

    with tempfile.TemporaryDirectory() as folder:
        rows = await run_all(Path(folder)) + await run_store_rows(Path(folder))
        sink_rows = await run_sinks(Path(folder))
    print(table(rows) + "\n\n" + sink_table(sink_rows))
    if out is not None:
        out.write_text(json.dumps({"rows": [asdict(r) for r in rows], "sink_rows": [asdict(r) for r in sink_rows],
                                   "measured": time.strftime("%Y-%m-%d")}, indent=1))


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.CRITICAL)  # the faults make the adapters log by design; the table says it all
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--store-rows", type=Path, metavar="FOLDER", help="only the store's rows, as JSON (the child "
                        "process of run_store_rows)")
    args = parser.parse_args()
    asyncio.run(_store_rows(args.store_rows) if args.store_rows else _main(args.out))
