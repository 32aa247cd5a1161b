"""The sink rows of the fault matrix: the InfluxDB write API (a real victoria-metrics, behind a real nginx and a
TCP relay) down, refusing and slow while the gateway records a simulated winder and forwards it.

Per row the gateway's line runtime reads a real Modbus winder into a real store and its InfluxDB forwarder writes
the outbox through the chain relay -> nginx -> victoria-metrics. The fault is switched on once samples flow, off
after a few seconds, and the row measures:

* detected: seconds from the fault to the forwarder showing it (not connected, or failing)
* recovered: seconds from the fault's end until the forwarder has caught up with what was stored by then (a
  slow sink is not "shown": its writes succeed, late; its backlog is what it cost)
* samples lost: numeric samples the store holds that the sink lacks, once the forwarder has drained; must be 0
* duplicates: points the sink holds twice (same series and time); must be 0 (victoria-metrics keeps raw points)
* backlog: outbox rows waiting when the fault ended (what the store held for the sink meanwhile)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.config import LineConfig
from gateway.forward.config import InfluxForward
from gateway.forward.influx import InfluxForwarder
from gateway.runtime.line import LineRuntime
from gateway.samples import Sample
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from simulators.line import SimConfig, SimLine
from tests.forward.conftest import Nginx, VictoriaMetrics, series_key, vm_key
from tests.reliability.matrix import until

EQ = "m1"
REFUSAL = '{"code":"unavailable","message":"the database is restarting"}'


class Relay:
    """A TCP relay in front of the sink: passes bytes, passes them late (`delay_s`), or is closed (`closed`)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.delay_s = 0.0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and cut every connection: the sink's host is gone (connection refused)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._links):
            w.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._links |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, late: bool) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if late and self.delay_s:
                        await asyncio.sleep(self.delay_s)
                    dst.write(data)
                    await dst.drain()
            dst.close()  # one side ended: so does the other

        try:
            await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
        finally:
            self._links -= {writer, up_writer}


@dataclass
class Chain:
    vm: VictoriaMetrics
    nginx: Nginx
    relay: Relay


Switch = Callable[[Chain], Awaitable[None]]


@dataclass(frozen=True)
class SinkFault:
    name: str
    on: Switch
    off: Switch
    hold_s: float = 4.0
    shown: bool = True  # the forwarder must show it (a slow sink is ridden out: writes succeed, late)


async def _close(c: Chain) -> None:
    await c.relay.close()


async def _reopen(c: Chain) -> None:
    await c.relay.start()


async def _refuse(c: Chain) -> None:
    c.nginx.answer(503, REFUSAL, retry_after=1)
    await asyncio.to_thread(c.nginx.reload)


async def _pass(c: Chain) -> None:
    c.nginx.proxy()
    await asyncio.to_thread(c.nginx.reload)


async def _slow(c: Chain) -> None:
    c.relay.delay_s = 2.0


async def _fast(c: Chain) -> None:
    c.relay.delay_s = 0.0


async def _vm_down(c: Chain) -> None:
    await asyncio.to_thread(c.vm.stop)


async def _vm_up(c: Chain) -> None:
    await asyncio.to_thread(c.vm.start)


SINK_FAULTS = [
    SinkFault("InfluxDB sink unreachable (connection refused)", _close, _reopen),
    SinkFault("InfluxDB sink down behind its proxy (502)", _vm_down, _vm_up),
    SinkFault("InfluxDB sink refusing (503 with Retry-After)", _refuse, _pass),
    SinkFault("InfluxDB sink slow (2 s a request)", _slow, _fast, hold_s=6.0, shown=False),
]


@dataclass
class SinkRow:
    fault: str
    detected_s: float | None
    recovered_s: float | None
    samples_lost: int
    duplicates: int
    backlog: int  # outbox rows waiting for the sink when the fault ended
    forwarded: int  # numeric samples the sink held at the end


def numeric(s: Sample) -> bool:
    return type(s.value) in (int, float) and math.isfinite(s.value)


async def run_sink_row(fault: SinkFault, folder: Path, seed: int = 5) -> SinkRow:
    """One fault of the sink under a gateway forwarding a fresh winder from a fresh store."""
    folder.mkdir(parents=True, exist_ok=True)
    vm = VictoriaMetrics(folder / "vm")
    await asyncio.to_thread(vm.start)  # the servers' start waits on readiness: off this loop, where other rows run
    nginx = Nginx(folder / "nginx", vm.url)
    await asyncio.to_thread(nginx.start)
    relay = Relay(nginx.port)
    await relay.start()
    chain = Chain(vm, nginx, relay)
    sims = SimLine()
    await sims.start([SimConfig(EQ, "winder", "modbus", port=0, seed=seed, time_scale=20)])
    store = SqliteStore(folder / "store.sqlite")
    await store.start()
    cfg = LineConfig.model_validate({"line": "sinks", "equipment": [{
        "id": EQ, "class": "winder", "protocol": "modbus", "endpoint": sims.endpoints()[EQ],
        "adapter": {"scan_interval_ms": 200, "timeout_s": 2.0, "backoff_max_s": 1.0}}]})
    runtime = LineRuntime(cfg, load_spec(), store)
    fwd = InfluxForwarder(store, InfluxForward(url=relay.url, batch_size=500, poll_s=0.2, backoff_max_s=1.0),
                          "sinks", {EQ: "winder"})
    reading = asyncio.create_task(runtime.run())
    forwarding = asyncio.create_task(fwd.run())
    try:
        if await until(lambda: fwd.stats()["written"] > 200, 30) is None:
            raise AssertionError(f"{fault.name}: nothing forwarded before the fault")
        await fault.on(chain)
        detected = await until(lambda: not fwd.stats()["connected"] or fwd.stats()["failing_since"] is not None,
                                fault.hold_s)
        await asyncio.sleep(fault.hold_s - (detected or fault.hold_s))
        await store.flush()
        backlog = (await store.outbox_backlog(fwd.stats()["cursor"]))[0]
        _, newest = await store.read_since(fwd.stats()["cursor"], 10**7)  # what the sink must reach
        await fault.off(chain)
        off_at = time.monotonic()
        while fwd.stats()["cursor"] < newest and time.monotonic() - off_at < 60:
            await asyncio.sleep(0.02)
        recovered = time.monotonic() - off_at if fwd.stats()["cursor"] >= newest else None
        # The end: reading stops, the forwarder drains everything stored, then the sink is compared with the store.
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await store.flush()
        rows, last = await store.read_since(0, 10**7)
        if await until(lambda: fwd.stats()["cursor"] >= last, 60) is None:
            raise AssertionError(f"{fault.name}: the forwarder did not drain the outbox ({fwd.stats()})")
        want = {series_key(s, "winder") for _, s in rows if numeric(s)}
        searchable = time.monotonic() + 20  # a point written is searchable a moment later
        while True:
            points = await asyncio.to_thread(vm.points, '{__name__=~"winder_.*", __name__!~".*_q"}')
            keys = [vm_key(labels, ts) for labels, ts, _ in points]
            if want <= set(keys) or time.monotonic() > searchable:
                break
            await asyncio.sleep(0.3)
        duplicates = sum(n - 1 for n in collections.Counter(keys).values() if n > 1)
        lost = len(want - set(keys))
        return SinkRow(fault.name, detected, recovered, lost, duplicates, backlog,
                       len(set(keys) & want))
    finally:
        for task in (reading, forwarding):
            task.cancel()
        await asyncio.gather(reading, forwarding, return_exceptions=True)
        await store.close()
        await sims.stop()
        await relay.close()
        await asyncio.to_thread(nginx.stop)
        await asyncio.to_thread(vm.stop)


def sink_table(rows: list[SinkRow]) -> str:
    head = ["fault", "detected (s)", "recovered (s)", "samples lost", "duplicates", "backlog at the end", "forwarded"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.fault, "-" if r.detected_s is None else f"{r.detected_s:.2f}",
                 "-" if r.recovered_s is None else f"{r.recovered_s:.2f}", str(r.samples_lost), str(r.duplicates),
                 str(r.backlog), str(r.forwarded)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def run_sinks(folder: Path, side_by_side: int = 1) -> list[SinkRow]:
    gate = asyncio.Semaphore(side_by_side)

    async def one(i: int, fault: SinkFault) -> SinkRow:
        async with gate:
            return await run_sink_row(fault, folder / f"sink{i}")

    return list(await asyncio.gather(*(one(i, f) for i, f in enumerate(SINK_FAULTS))))
