"""The Modbus adapter against real Modbus TCP servers on loopback."""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from gateway.adapters.base import AdapterError, Point, RawReading
from gateway.adapters.modbus import ModbusAdapter
from gateway.adapters.modbus.planner import Extent, Limits, plan
from interface_spec.modbus_codec import encode, register_count
from simulators.servers.modbus_server import ModbusSimServer
from tests.conftest import find_free_port

FAST = {"scan_interval_ms": 20, "timeout_s": 0.5, "backoff_initial_s": 0.02, "backoff_max_s": 0.2}
ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]
VALUES = {
    "int16": -1234, "uint16": 54321, "float16": -2.5,
    "int32": -123456789, "uint32": 3_000_000_000, "float32": 1.5,
    "int64": -(2**40) - 3, "uint64": 2**63 + 11, "float64": math.pi,
}


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait for a condition; the timeout only keeps a broken build from hanging."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Recorder:
    """Collects what run() reports."""

    def __init__(self, adapter: ModbusAdapter | None = None):
        self.scans: list[dict[str, RawReading]] = []
        self.links: list[tuple[bool, str]] = []
        self.requests_at_scan: list[int] = []
        self.adapter = adapter

    def on_readings(self, readings: list[RawReading]) -> None:
        self.scans.append({r.key: r for r in readings})
        if self.adapter is not None:
            self.requests_at_scan.append(self.adapter.health().requests)

    def on_link(self, up: bool, reason: str) -> None:
        self.links.append((up, reason))

    @property
    def up(self) -> bool:
        return bool(self.links) and self.links[-1][0]


@asynccontextmanager
async def running(adapter: ModbusAdapter) -> AsyncIterator[Recorder]:
    rec = Recorder(adapter)
    task = asyncio.create_task(adapter.run(rec.on_readings, rec.on_link))
    try:
        yield rec
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled(), "run() ended by itself instead of on cancellation"


def adapter_for(server: ModbusSimServer, points: list[Point], **settings: Any) -> ModbusAdapter:
    return ModbusAdapter(f"modbus://127.0.0.1:{server.port}", points, {**FAST, **settings})


# --- reading ------------------------------------------------------------------------


async def test_reads_typed_values_in_all_orders(modbus_sim: ModbusSimServer) -> None:
    points, expected = [], {}
    address = 100
    for dtype, value in VALUES.items():
        for order in ORDERS:
            key = f"{dtype}/{order}"
            regs = encode(value, dtype, order)
            modbus_sim.set_registers(address, regs)
            points.append(Point(key, {"table": "holding", "address": address, "dtype": dtype, "order": order}))
            expected[key] = value
            address += len(regs) + 1
    modbus_sim.set_registers(500, encode("CELL-0042", "string", count=8))
    points.append(Point("serial", {"address": 500, "dtype": "string", "count": 8}))
    expected["serial"] = "CELL-0042"
    modbus_sim.set_registers(600, [0b0100_0000_0000_0001])
    points.append(Point("bit0", {"address": 600, "dtype": "bit", "bit": 0}))
    points.append(Point("bit1", {"address": 600, "dtype": "bit", "bit": 1}))
    points.append(Point("bit14", {"address": 600, "dtype": "bit", "bit": 14}))
    expected.update(bit0=True, bit1=False, bit14=True)
    modbus_sim.set_registers(7, encode(-42.25, "float32", "CDAB"), table="input")
    points.append(Point("in", {"table": "input", "address": 7, "dtype": "float32", "order": "CDAB"}))
    expected["in"] = -42.25
    modbus_sim.set_coils(3, [True, False, True])
    points.append(Point("coil3", {"table": "coil", "address": 3}))
    points.append(Point("coil4", {"table": "coil", "address": 4}))
    points.append(Point("coils", {"table": "coil", "address": 3, "count": 3}))
    expected.update(coil3=True, coil4=False, coils=[True, False, True])
    modbus_sim.set_coils(9, [True], table="discrete")
    points.append(Point("di9", {"table": "discrete", "address": 9}))
    expected["di9"] = True

    adapter = adapter_for(modbus_sim, points)
    # read() on its own connects on demand
    direct = {r.key: r for r in await adapter.read(list(expected))}
    assert {k: r.value for k, r in direct.items()} == expected
    assert all(r.error == "" and r.source_ts is None for r in direct.values())
    async with running(adapter) as rec:
        await wait_until(lambda: len(rec.scans) >= 2, "two scans")
    assert rec.links[0] == (True, "")
    assert {k: r.value for k, r in rec.scans[-1].items()} == expected


async def test_values_change_between_scans(modbus_sim: ModbusSimServer) -> None:
    adapter = adapter_for(modbus_sim, [Point("speed", {"address": 0, "dtype": "float32"})])
    modbus_sim.set_registers(0, encode(1.0, "float32"))
    async with running(adapter) as rec:
        await wait_until(lambda: rec.scans and rec.scans[-1]["speed"].value == 1.0, "first value")
        modbus_sim.set_registers(0, encode(2.0, "float32"))
        await wait_until(lambda: rec.scans[-1]["speed"].value == 2.0, "changed value")


async def test_scanning_waits_while_the_runtime_answers_that_it_is_behind(modbus_sim: ModbusSimServer) -> None:
    adapter = adapter_for(modbus_sim, [Point("speed", {"address": 0, "dtype": "float32"})])
    room = asyncio.Event()
    scans = 0

    def on_readings(readings: list[RawReading]):
        nonlocal scans
        scans += 1
        return room.wait() if scans == 2 else None  # the second batch finds the store behind

    task = asyncio.create_task(adapter.run(on_readings, lambda up, reason: None))
    try:
        await wait_until(lambda: scans == 2, "two scans")
        requests = adapter.health().requests
        await asyncio.sleep(0.3)  # fifteen scan intervals
        assert scans == 2 and adapter.health().requests == requests  # not a request while it waits
        room.set()
        await wait_until(lambda: scans >= 4, "scanning to go on once there is room")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_unscanned_points_are_read_on_demand_only(modbus_sim: ModbusSimServer) -> None:
    modbus_sim.set_registers(0, [7, 8])
    points = [Point("a", {"address": 0}), Point("b", {"address": 1, "scan": False})]
    adapter = adapter_for(modbus_sim, points)
    async with running(adapter) as rec:
        await wait_until(lambda: len(rec.scans) >= 1, "a scan")
        assert set(rec.scans[0]) == {"a"}
        assert [r.value for r in await adapter.read(["b", "a"])] == [8, 7]


async def test_long_string_is_read_in_parts(modbus_sim: ModbusSimServer) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(500))
    modbus_sim.set_registers(1000, encode(text, "string", count=250))
    adapter = adapter_for(modbus_sim, [Point("text", {"address": 1000, "dtype": "string", "count": 250})])
    [reading] = await adapter.read(["text"])
    assert reading.value == text
    assert adapter.health().requests == 2  # 125 + 125 registers
    modbus_sim.faults.exception_addresses[range(1200, 1201)] = 2  # in the second part only
    [reading] = await adapter.read(["text"])
    assert reading.value is None and reading.error == "modbus exception 2 (illegal data address)"
    modbus_sim.faults.exception_addresses = {range(1000, 1001): 4}  # in the first part only
    [reading] = await adapter.read(["text"])
    assert reading.value is None and reading.error == "modbus exception 4 (server device failure)"


# --- device errors --------------------------------------------------------------------


async def test_exception_marks_only_the_points_of_its_request(modbus_sim: ModbusSimServer) -> None:
    modbus_sim.set_registers(0, [1, 2, 3])
    modbus_sim.set_registers(200, [4, 5])
    modbus_sim.set_registers(400, [6])
    modbus_sim.faults.exception_addresses[range(200, 202)] = 2
    modbus_sim.faults.exception_addresses[(400, 401)] = 11
    points = [Point(f"r{a}", {"address": a}) for a in (0, 1, 2, 200, 201, 400)]
    adapter = adapter_for(modbus_sim, points)
    async with running(adapter) as rec:
        await wait_until(lambda: len(rec.scans) >= 2, "two scans")
        scan = rec.scans[-1]
        assert [scan[k].value for k in ("r0", "r1", "r2")] == [1, 2, 3]
        assert all(scan[k].error == "" for k in ("r0", "r1", "r2"))
        for k in ("r200", "r201"):
            assert scan[k].value is None
            assert scan[k].error == "modbus exception 2 (illegal data address)"
        assert scan["r400"].error == "modbus exception 11 (gateway target device failed to respond)"
        assert rec.links == [(True, "")]  # exceptions are answers: the link stays up
        modbus_sim.faults.exception_addresses.clear()
        await wait_until(lambda: rec.scans[-1]["r200"].value == 4, "recovery of the failing range")
    assert adapter.health().read_errors >= 6


async def test_busy_device_is_retried_then_reported(modbus_sim: ModbusSimServer) -> None:
    modbus_sim.set_registers(0, [9])
    modbus_sim.faults.exception_addresses[range(0, 1)] = 6
    adapter = adapter_for(modbus_sim, [Point("x", {"address": 0})], busy_retries=2, busy_pause_ms=1)
    [r] = await adapter.read(["x"])
    assert r.error == "modbus exception 6 (server device busy)"
    h = adapter.health()
    assert h.requests == 3 and h.extra["busy_retries"] == 2


async def test_device_request_limit(modbus_sim: ModbusSimServer) -> None:
    modbus_sim.set_registers(0, list(range(40)))
    modbus_sim.faults.max_registers_per_request = 10
    points = [Point(f"r{a}", {"address": a}) for a in range(40)]
    # Refused for its length (exception 3), the merged request is halved until the device takes it.
    greedy = adapter_for(modbus_sim, points)
    assert [r.value for r in await greedy.read([p.key for p in points])] == list(range(40))
    assert greedy.health().requests == 1 + 2 + 4  # 40 refused, 2 x 20 refused, 4 x 10 answered
    # A scan remembers the split: later scans ask only what the device takes.
    async with running(greedy) as rec:
        await wait_until(lambda: len(rec.requests_at_scan) >= 4, "four scans")
    per_scan = [b - a for a, b in zip(rec.requests_at_scan, rec.requests_at_scan[1:])]
    assert set(per_scan) == {4}
    assert all(r.error == "" for scan in rec.scans for r in scan.values())
    picky = adapter_for(modbus_sim, points, max_registers_per_request=10)
    assert [r.value for r in await picky.read([p.key for p in points])] == list(range(40))
    assert picky.health().requests == 4


async def test_address_exception_in_a_merged_request_spoils_only_the_failing_points(modbus_sim: ModbusSimServer) -> None:
    modbus_sim.set_registers(0, list(range(100, 121)))
    modbus_sim.faults.exception_addresses[range(5, 7)] = 2  # two registers the device refuses
    points = [Point(f"r{a}", {"address": a}) for a in range(21)]
    adapter = adapter_for(modbus_sim, points, reprobe_scans=5)
    assert adapter.health().extra["scan_requests"] == 1  # all 21 in one merged request
    async with running(adapter) as rec:
        await wait_until(lambda: len(rec.scans) >= 8, "eight scans")
        for scan in rec.scans:
            assert {k for k, r in scan.items() if r.error} == {"r5", "r6"}
            assert {scan[k].error for k in ("r5", "r6")} == {"modbus exception 2 (illegal data address)"}
            assert all(scan[f"r{a}"].value == 100 + a for a in range(21) if a not in (5, 6))
        assert rec.links == [(True, "")]
        h = adapter.health().extra
        assert h["unreadable_points"] == 2 and h["scan_requests"] > 1
        # The split is paid once: later scans ask the same few requests, and the
        # refused points alone only every fifth scan.
        per_scan = [b - a for a, b in zip(rec.requests_at_scan[1:], rec.requests_at_scan[2:])]
        assert set(per_scan) <= {h["scan_requests"], h["scan_requests"] + 2}, per_scan
        assert per_scan.count(h["scan_requests"] + 2) <= len(per_scan) // 5 + 1
        splits = h["splits"]
        modbus_sim.faults.exception_addresses.clear()  # the device heals
        await wait_until(lambda: rec.scans[-1]["r5"].value == 105 and rec.scans[-1]["r6"].value == 106,
                         "the refused points read again")
        await wait_until(lambda: adapter.health().extra["scan_requests"] == 1, "the merged request back")
        assert adapter.health().extra["unreadable_points"] == 0
        assert adapter.health().extra["splits"] == splits  # no split since the first scan


async def test_a_device_refusing_its_whole_map_is_asked_a_few_points_at_a_time(modbus_sim: ModbusSimServer) -> None:
    modbus_sim.set_registers(0, list(range(100, 140)))
    modbus_sim.faults.exception_addresses[range(0, 40)] = 2  # a map that does not fit the device at all
    points = [Point(f"r{a}", {"address": a}) for a in range(40)]
    adapter = adapter_for(modbus_sim, points, reprobe_scans=2)
    async with running(adapter) as rec:
        await wait_until(lambda: len(rec.scans) >= 8, "eight scans")
        assert all(r.error == "modbus exception 2 (illegal data address)" for scan in rec.scans for r in scan.values())
        assert rec.links == [(True, "")]  # it answers: the link is up, the points are bad
        per_scan = [b - a for a, b in zip(rec.requests_at_scan[1:], rec.requests_at_scan[2:])]
        assert set(per_scan) <= {0, 8}, per_scan  # nothing, or eight points alone every other scan
        modbus_sim.faults.exception_addresses.clear()
        healed_at = len(rec.scans)
        await wait_until(lambda: all(not r.error for r in rec.scans[-1].values()), "every point read again")
        assert adapter.health().extra["scan_requests"] == 1
        # The device healed as a whole: the first reprobe round that finds its eight points answering brings
        # the whole map back, not eight points a round (five rounds, ten scans, for these forty).
        assert len(rec.scans) - healed_at <= 2 * 2 + 1, len(rec.scans) - healed_at


async def test_a_refused_hole_between_points_keeps_the_split_that_avoids_it(modbus_sim: ModbusSimServer) -> None:
    modbus_sim.set_registers(0, list(range(100, 121)))
    modbus_sim.faults.exception_addresses[range(5, 6)] = 2  # a point's register ...
    modbus_sim.faults.exception_addresses[range(10, 12)] = 2  # ... and a hole no point asks for, read along
    points = [Point(f"r{a}", {"address": a}) for a in (*range(10), *range(12, 21))]
    adapter = adapter_for(modbus_sim, points, reprobe_scans=1000)
    async with running(adapter) as rec:
        await wait_until(lambda: len(rec.scans) >= 8, "eight scans")
        for scan in rec.scans:
            assert {k for k, r in scan.items() if r.error} == {"r5"}
            assert all(r.value == 100 + int(k[1:]) for k, r in scan.items() if k != "r5")
        # Merged again around r5 once, refused for the hole, back to the split for good.
        per_scan = [b - a for a, b in zip(rec.requests_at_scan[2:], rec.requests_at_scan[3:])]
        assert set(per_scan) == {adapter.health().extra["scan_requests"]}, per_scan
        splits = adapter.health().extra["splits"]
        await wait_until(lambda: len(rec.scans) >= 12, "four more scans")
        assert adapter.health().extra["splits"] == splits


@pytest.mark.parametrize("code", [6, 11])
async def test_a_device_refusing_every_read_is_a_link_fault(modbus_sim: ModbusSimServer, code: int) -> None:
    modbus_sim.set_registers(0, [1, 2])
    modbus_sim.set_registers(300, [3])
    points = [Point("a", {"address": 0}), Point("b", {"address": 1}), Point("c", {"address": 300})]
    adapter = adapter_for(modbus_sim, points, busy_pause_ms=1, backoff_initial_s=0.05, backoff_max_s=0.2)
    reason = f"every read refused: {'server device busy' if code == 6 else 'gateway target device failed to respond'}" \
             f" (exception {code})"
    async with running(adapter) as rec:
        await wait_until(lambda: rec.up and rec.scans, "first scan")
        modbus_sim.faults.exception_addresses[range(0, 65536)] = code  # every request, on the same connection
        await wait_until(lambda: not rec.up, "link down")
        assert rec.links[-1] == (False, reason)
        scans = len(rec.scans)
        await wait_until(lambda: adapter.health().extra["refused_scans"] >= 3, "the device asked again, backing off")
        assert len(rec.scans) == scans  # nothing delivered while it refuses
        assert modbus_sim.connections == 1 and adapter.health().reconnects == 0  # the connection is kept
        modbus_sim.faults.exception_addresses.clear()
        modbus_sim.set_registers(0, [7])
        await wait_until(lambda: rec.up and rec.scans[-1]["a"].value == 7, "reads answered again")
    assert rec.links == [(True, ""), (False, reason), (True, "")]  # one down, one up, not one per scan
    assert adapter.health().last_error == reason


async def test_recovery_does_not_wait_on_the_backoff(modbus_sim: ModbusSimServer) -> None:
    modbus_sim.set_registers(0, [1])
    # A first wait of 15-30 s: what a long outage leaves the backoff at.
    adapter = adapter_for(modbus_sim, [Point("x", {"address": 0})], backoff_initial_s=30, backoff_max_s=60)
    loop = asyncio.get_running_loop()
    async with running(adapter) as rec:
        await wait_until(lambda: rec.up and rec.scans, "first scan")
        await modbus_sim.stop()
        await wait_until(lambda: adapter.health().extra["retry_in_s"] > 10, "a long wait before reconnecting")
        assert not rec.up
        await asyncio.sleep(1.0)  # the device stays away a while (the fault, not a wait for the adapter)
        assert not rec.up
        modbus_sim.set_registers(0, [2])
        await modbus_sim.start()
        back = loop.time()
        await wait_until(lambda: rec.up and rec.scans[-1]["x"].value == 2, "data back")
        took = loop.time() - back
    # The bound is about not waiting out the backoff (15 s at least), not a benchmark.
    assert took < 5, f"data came back {took:.1f} s after the device"
    assert adapter.health().extra["early_reconnects"] == 1


# --- the link -----------------------------------------------------------------------------


async def test_server_restart_is_recovered_by_itself(modbus_sim: ModbusSimServer) -> None:
    modbus_sim.set_registers(0, [11])
    adapter = adapter_for(modbus_sim, [Point("x", {"address": 0})])
    async with running(adapter) as rec:
        await wait_until(lambda: rec.up and rec.scans, "first scan")
        await modbus_sim.stop()
        await wait_until(lambda: not rec.up, "link down")
        assert rec.links[-1][1]  # a reason is given
        scans_while_down = len(rec.scans)
        await asyncio.sleep(0.2)  # several reconnect attempts against a closed port
        assert len(rec.scans) == scans_while_down
        assert [up for up, _ in rec.links] == [True, False]  # reported once per outage
        await modbus_sim.start()
        modbus_sim.set_registers(0, [12])
        await wait_until(lambda: rec.up, "link up again")
        await wait_until(lambda: rec.scans[-1]["x"].value == 12, "fresh value after restart")
    h = adapter.health()
    assert h.reconnects >= 1
    assert [up for up, _ in rec.links] == [True, False, True]


async def test_dropped_connections_and_refusal(modbus_sim: ModbusSimServer) -> None:
    adapter = adapter_for(modbus_sim, [Point("x", {"address": 0})])
    async with running(adapter) as rec:
        await wait_until(lambda: rec.up and rec.scans, "first scan")
        modbus_sim.faults.refuse = True
        modbus_sim.faults.drop_connections()
        await wait_until(lambda: not rec.up, "link down")
        assert modbus_sim.connections == 0
        modbus_sim.faults.refuse = False
        await wait_until(lambda: rec.up, "link up after the port opens again")
        await wait_until(lambda: modbus_sim.connections == 1, "one connection")


async def test_slow_device_does_not_block_another_adapter(modbus_sim: ModbusSimServer) -> None:
    async with ModbusSimServer() as slow_server:
        slow_server.faults.delay_s = 60.0  # never answers within the test
        modbus_sim.set_registers(0, [5])
        slow = adapter_for(slow_server, [Point("x", {"address": 0})], timeout_s=0.2)
        quick = adapter_for(modbus_sim, [Point("x", {"address": 0})])
        async with running(slow) as slow_rec, running(quick) as quick_rec:
            await wait_until(lambda: len(quick_rec.scans) >= 20, "twenty scans of the quick device")
            await wait_until(lambda: slow_rec.links, "the slow device's link report")
        assert slow_rec.scans == []
        assert slow_rec.links[0][0] is False and "no reply" in slow_rec.links[0][1]
        assert slow.health().extra["timeouts"] >= 1
        assert quick_rec.links == [(True, "")]


async def test_timeout_closes_and_reopens_the_connection(modbus_sim: ModbusSimServer) -> None:
    modbus_sim.set_registers(0, [3])
    adapter = adapter_for(modbus_sim, [Point("x", {"address": 0})], timeout_s=0.2)
    async with running(adapter) as rec:
        await wait_until(lambda: rec.up and rec.scans, "first scan")
        modbus_sim.faults.delay_s = 0.5
        await wait_until(lambda: not rec.up, "link down on timeout")
        assert "no reply" in rec.links[-1][1]
        modbus_sim.faults.delay_s = 0.0
        modbus_sim.set_registers(0, [4])
        await wait_until(lambda: rec.up and rec.scans[-1]["x"].value == 4, "answers again")
    assert adapter.health().reconnects >= 1


class TcpPeer:
    """A plain TCP server on loopback for the peers below; `_serve` is what each does."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class StallingProxy(TcpPeer):
    """A TCP proxy in front of a device that can go half-open: while stalled it still accepts
    connections, but passes nothing on, either way (what is sent meanwhile is lost)."""

    def __init__(self, target_port: int) -> None:
        super().__init__()
        self.target_port = target_port
        self.stalled = False
        self._pumps: set[asyncio.Task] = set()

    async def stop(self) -> None:
        for task in self._pumps:
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        await super().stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        pumps = {asyncio.create_task(self._pump(reader, up_writer)), asyncio.create_task(self._pump(up_reader, writer))}
        self._pumps |= pumps
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        self._pumps -= pumps
        writer.close()
        up_writer.close()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(4096):
            if not self.stalled:
                sink.write(data)
                await sink.drain()


async def test_recovery_from_a_half_open_link_does_not_wait_on_the_backoff(modbus_sim: ModbusSimServer) -> None:
    """The port stays open throughout, so it says nothing: the device is asked a small read instead."""
    modbus_sim.set_registers(0, [1])
    proxy = StallingProxy(modbus_sim.port)
    await proxy.start()
    loop = asyncio.get_running_loop()
    try:
        adapter = ModbusAdapter(f"127.0.0.1:{proxy.port}", [Point("x", {"address": 0})],
                                {**FAST, "timeout_s": 0.3, "backoff_initial_s": 30, "backoff_max_s": 60})
        async with running(adapter) as rec:
            await wait_until(lambda: rec.up and rec.scans, "first scan")
            proxy.stalled = True
            await wait_until(lambda: adapter.health().extra["retry_in_s"] > 10, "a long wait before reconnecting")
            assert not rec.up and "no reply" in rec.links[-1][1]
            await asyncio.sleep(3.0)  # half-open a while (the fault, not a wait for the adapter)
            assert not rec.up
            modbus_sim.set_registers(0, [2])
            proxy.stalled = False
            back = loop.time()
            await wait_until(lambda: rec.up and rec.scans[-1]["x"].value == 2, "data back")
            took = loop.time() - back
    finally:
        await proxy.stop()
    # The bound is about not waiting out the backoff (15 s at least), not a benchmark.
    assert took < 5, f"data came back {took:.1f} s after the link"
    assert adapter.health().extra["early_reconnects"] == 1


class GarblingServer(TcpPeer):
    """A TCP peer that answers every read with one register fewer than asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", head)
                pdu = await reader.readexactly(length - 1)
                _fc, _address, count = struct.unpack(">BHH", pdu[:5])
                body = struct.pack(">BB", 3, 2 * (count - 1)) + b"\x00\x01" * (count - 1)
                writer.write(struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


async def test_garbled_reply_closes_and_reopens_the_connection() -> None:
    peer = GarblingServer()
    await peer.start()
    try:
        adapter = ModbusAdapter(f"127.0.0.1:{peer.port}", [Point("x", {"address": 0, "dtype": "uint32"})], FAST)
        async with running(adapter) as rec:
            await wait_until(lambda: rec.links and peer.connections >= 3, "several reconnections")
        assert rec.scans == []
        assert rec.links[0][0] is False and "garbled reply" in rec.links[0][1]
    finally:
        await peer.stop()


async def test_nothing_listening_is_reported_and_retried() -> None:
    port = find_free_port()
    adapter = ModbusAdapter(f"modbus+tcp://127.0.0.1:{port}", [Point("x", {"address": 0})], FAST)
    async with running(adapter) as rec:
        await wait_until(lambda: rec.links, "a link report")
        assert rec.links[0][0] is False and "cannot connect" in rec.links[0][1]
        server = ModbusSimServer(port=port)
        await server.start()
        try:
            await wait_until(lambda: rec.up and rec.scans, "connected once the device appears")
        finally:
            await server.stop()
    with pytest.raises(AdapterError, match="cannot connect"):
        await adapter.read(["x"])


async def test_cancelling_run_closes_the_connection(modbus_sim: ModbusSimServer) -> None:
    adapter = adapter_for(modbus_sim, [Point("x", {"address": 0})])
    async with running(adapter) as rec:
        await wait_until(lambda: rec.scans and modbus_sim.connections == 1, "a scan")
    await wait_until(lambda: modbus_sim.connections == 0, "the connection closed")
    assert not adapter.health().connected


async def test_cancel_landing_with_a_reply_still_stops_run(modbus_sim: ModbusSimServer) -> None:
    """Python 3.11's wait_for (inside pymodbus) swallows a cancel that arrives with the reply."""
    adapter = adapter_for(modbus_sim, [Point("x", {"address": 0})], scan_interval_ms=1)
    rec = Recorder()
    task = asyncio.create_task(adapter.run(rec.on_readings, rec.on_link))
    await wait_until(lambda: rec.scans, "a scan")

    def cancel_as_the_reply_arrives(sending: bool, pdu: Any) -> Any:
        if not sending:
            task.cancel()
        return pdu

    # pymodbus's own trace hook: it runs just before the reply resolves the waiting request
    adapter._client.ctx.trace_pdu = cancel_as_the_reply_arrives
    await asyncio.wait([task], timeout=15)
    assert task.cancelled()


# --- writing ----------------------------------------------------------------------------


async def test_write_then_read_back(modbus_sim: ModbusSimServer) -> None:
    writes: list[tuple[str, int, list]] = []
    modbus_sim.on_write = lambda table, address, values: writes.append((table, address, values))
    points = [
        Point("f64", {"address": 0, "dtype": "float64", "order": "DCBA"}),
        Point("i32", {"address": 10, "dtype": "int32", "order": "CDAB"}),
        Point("u16", {"address": 20, "dtype": "uint16"}),
        Point("text", {"address": 30, "dtype": "string", "count": 16}),
        Point("flag", {"address": 50, "dtype": "bit", "bit": 3}),
        Point("coil", {"table": "coil", "address": 5}),
        Point("in", {"table": "input", "address": 0}),
    ]
    adapter = adapter_for(modbus_sim, points)
    modbus_sim.set_registers(50, [0b1000_1001])
    await adapter.write("f64", -1.25)
    await adapter.write("i32", -70000)
    await adapter.write("u16", 65535)
    await adapter.write("text", "lot 7")
    await adapter.write("flag", False)
    await adapter.write("coil", True)
    back = {r.key: r.value for r in await adapter.read(["f64", "i32", "u16", "text", "flag", "coil"])}
    assert back == {"f64": -1.25, "i32": -70000, "u16": 65535, "text": "lot 7", "flag": False, "coil": True}
    assert modbus_sim.get_registers(10, 2) == encode(-70000, "int32", "CDAB")
    assert modbus_sim.get_registers(50, 1) == [0b1000_0001]  # the other bits stay
    await adapter.write("flag", True)
    assert modbus_sim.get_registers(50, 1) == [0b1000_1001]
    assert modbus_sim.get_coils(5, 1) == [True]
    assert ("holding", 20, [65535]) in writes
    assert ("coil", 5, [True]) in writes
    assert adapter.health().extra["writes"] == 7


async def test_write_failures_raise_adapter_error(modbus_sim: ModbusSimServer) -> None:
    points = [Point("u16", {"address": 20}), Point("in", {"table": "input", "address": 0}),
              Point("guarded", {"address": 300})]
    modbus_sim.faults.exception_addresses[range(300, 301)] = 2
    adapter = adapter_for(modbus_sim, points)
    with pytest.raises(AdapterError, match="out of range for uint16"):
        await adapter.write("u16", 70000)
    with pytest.raises(AdapterError, match="read-only"):
        await adapter.write("in", 1)
    with pytest.raises(AdapterError, match="no point 'nope'"):
        await adapter.write("nope", 1)
    with pytest.raises(AdapterError, match=r"modbus exception 2 \(illegal data address\)"):
        await adapter.write("guarded", 1)
    with pytest.raises(AdapterError, match="modbus has no methods"):
        await adapter.call("u16", [])
    assert adapter.health().extra["write_errors"] == 3  # an unknown key is not a device failure


# --- request planning on the wire -----------------------------------------------------------


async def test_requests_per_scan_equal_the_planned_minimum(modbus_sim: ModbusSimServer) -> None:
    points = [Point(f"v{i}", {"address": 40004 + 2 * i, "dtype": "float32"}) for i in range(80)]
    points += [Point(f"alarm{i}", {"address": 40300 + i}) for i in range(8)]
    points += [Point("serial", {"address": 41000, "dtype": "string", "count": 16})]
    points += [Point("in0", {"table": "input", "address": 0, "dtype": "uint32"}),
               Point("in30", {"table": "input", "address": 30, "dtype": "uint32"})]
    points += [Point(f"c{i}", {"table": "coil", "address": 7 * i}) for i in range(10)]
    extents = [Extent(1, p.options.get("table", "holding"), p.options["address"],
                      register_count(p.options.get("dtype", "uint16"), p.options.get("count"))) for p in points]
    minimum = len(plan(extents, Limits()))
    assert minimum == 6  # holding: 2 for the values, 1 alarm words, 1 string; 1 input; 1 coil
    adapter = adapter_for(modbus_sim, points, scan_interval_ms=10)
    async with running(adapter) as rec:
        await wait_until(lambda: len(rec.requests_at_scan) >= 4, "four scans")
    per_scan = [b - a for a, b in zip(rec.requests_at_scan, rec.requests_at_scan[1:])]
    assert set(per_scan) == {minimum}
    assert rec.requests_at_scan[0] == minimum
    assert adapter.health().extra["scan_requests"] == minimum


async def test_one_request_in_flight_while_commands_interleave(modbus_sim: ModbusSimServer) -> None:
    """Concurrent read() and write() calls during scans all succeed: the adapter queues them."""
    points = [Point(f"r{i}", {"address": i * 100}) for i in range(10)]
    adapter = adapter_for(modbus_sim, points, scan_interval_ms=1)
    async with running(adapter) as rec:
        await wait_until(lambda: rec.scans, "a scan")
        writes = [adapter.write(f"r{i}", i + 1) for i in range(10)]
        reads = [adapter.read([f"r{i}"]) for i in range(10)]
        results = await asyncio.gather(*writes, *reads)
        assert all(r is None for r in results[:10])
        await wait_until(lambda: [rec.scans[-1][f"r{i}"].value for i in range(10)] == list(range(1, 11)), "written values")
    assert rec.links == [(True, "")]


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="dtype"):
        ModbusAdapter("127.0.0.1:502", [Point("x", {"address": 0, "dtype": "int8"})], {})
    with pytest.raises(ValueError, match="order"):
        ModbusAdapter("127.0.0.1:502", [Point("x", {"address": 0, "dtype": "int32", "order": "AB"})], {})
    with pytest.raises(ValueError, match="address"):
        ModbusAdapter("127.0.0.1:502", [Point("x", {"dtype": "int32"})], {})
    with pytest.raises(ValueError, match="max_registers_per_request"):
        ModbusAdapter("127.0.0.1:502", [], {"max_registers_per_request": 200})
    with pytest.raises(ValueError, match="port"):
        ModbusAdapter("modbus://127.0.0.1:70000", [], {})
    with pytest.raises(ValueError, match="twice"):
        ModbusAdapter("127.0.0.1", [Point("x", {"address": 0}), Point("x", {"address": 1})], {})
    assert ModbusAdapter("modbus+tcp://[::1]:1502", [], {}).where == "[::1]:1502"
    assert ModbusAdapter("plc7", [], {}).port == 502
