"""The conforming Modbus binding, read and commanded by a plain pymodbus client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from pymodbus.client import AsyncModbusTcpClient

from interface_spec import modbus_codec as codec
from interface_spec.modbus_map import ModbusLayout, layout
from interface_spec.model import SelfDescription
from simulators.line import SimConfig
from simulators.simulator import Simulator

from .harness import run_until, serving

MAX_REGS = 125


class Reader:
    """Typed reads and writes over the spec's register map."""

    def __init__(self, client: AsyncModbusTcpClient, lay: ModbusLayout):
        self.client = client
        self.lay = lay

    async def regs(self, address: int, count: int) -> list[int]:
        out: list[int] = []
        while count > 0:
            n = min(count, MAX_REGS)
            rr = await self.client.read_holding_registers(address, count=n)
            assert not rr.isError(), rr
            out += rr.registers
            address += n
            count -= n
        return out

    async def value(self, name: str):
        p = self.lay.point(name)
        regs = await self.regs(p.address, p.count)
        return codec.decode(regs, p.dtype, count=p.count if p.dtype == "string" else None)

    async def write(self, address: int, regs: list[int]) -> None:
        rr = await self.client.write_registers(address, regs)
        assert not rr.isError(), rr


@pytest_asyncio.fixture
async def coater(spec) -> AsyncIterator[Simulator]:
    async with serving(SimConfig("coater7", "coater", "modbus", seed=7, counts={"dryer_zone": 3, "lane": 2},
                               auto_start=False), spec) as sim:
        yield sim


@pytest_asyncio.fixture
async def reader(coater, spec) -> AsyncIterator[Reader]:
    client = AsyncModbusTcpClient("127.0.0.1", port=coater.binding.port)
    await client.connect()
    try:
        yield Reader(client, layout(spec.core, spec.get_class("coater")))
    finally:
        client.close()


async def test_marker_block_headers_and_end(reader, spec):
    mb, cls = spec.core.modbus, spec.get_class("coater")
    a = reader.lay.areas
    assert a["marker"].address == mb.base_address
    head = await reader.regs(mb.base_address, 4)
    assert codec.decode(head[:2], "string") == mb.marker == "LnGw"
    assert head[2:] == [mb.common_block, mb.common_length]
    assert await reader.regs(a["class.header"].address, 2) == [cls.modbus_block, cls.modbus_length]
    assert a["class.header"].address == mb.base_address + 4 + mb.common_length
    assert await reader.regs(a["end.header"].address, 2) == [0xFFFF, 0]


async def test_identification_and_configuration(reader, coater, spec):
    for name in ("manufacturer", "model", "serial_number", "equipment_class", "spec_version", "supported_profiles"):
        assert await reader.value(f"identification.{name}") == coater.machine.get(f"identification.{name}")
    assert await reader.value("identification.equipment_class") == "coater"
    assert await reader.value("identification.spec_version") == spec.version
    assert await reader.value("configuration.dryer_zone_count") == 3
    assert await reader.value("configuration.lane_count") == 2


async def test_self_description_at_the_dictionary(reader, spec):
    n = await reader.value("dictionary.length")
    text = codec.decode(await reader.regs(reader.lay.areas["dictionary.text"].address, (n + 1) // 2), "string")
    desc = SelfDescription.model_validate(json.loads(text[:n]))
    assert desc.equipment_class == "coater" and desc.counts == {"dryer_zone": 3, "lane": 2}


async def test_values_change_while_the_machine_runs(reader, coater, spec):
    beat = await reader.value("status.heartbeat")
    coater.machine.execute("Reset")
    await run_until(coater, lambda: coater.machine.state() == "Idle", "Idle")
    coater.machine.execute("Start")
    await run_until(coater, lambda: coater.machine.producing, "Execute")
    await run_until(coater, lambda: coater.machine.get("web.line_speed") > 10, "web up to speed")
    assert await reader.value("status.heartbeat") > beat
    assert await reader.value("state.packml_state") == spec.enum("packml_state")["Execute"]
    assert await reader.value("state.item_state") == spec.enum("item_state")["Executing"]
    speed = await reader.value("web.line_speed")
    _lo, hi = spec.variable("coater", "web.line_speed").var.range
    assert 10 < speed <= hi and speed == pytest.approx(coater.machine.get("web.line_speed"), rel=1e-6)
    weight = await reader.value("lane[2].areal_weight")
    assert weight == pytest.approx(coater.machine.get("lane[2].areal_weight"), rel=1e-6) and weight > 5


async def command(reader: Reader, spec, name: str, seq: int, number: int = 0, text: str = "") -> int:
    """Code, seq and parameters in one request; the server answers result_seq = seq."""
    a = reader.lay.areas
    regs = ([spec.commands[name].code if name in spec.commands else 99, seq] + codec.encode(number, "int32")
            + codec.encode(text, "string", count=a["command.param_text"].count))
    await reader.write(a["command.code"].address, regs)
    assert await reader.value("command.result_seq") == seq
    return await reader.value("command.result_code")


async def test_command_handshake_moves_the_state_machine(reader, coater, spec):
    codes = spec.result_codes
    packml = spec.enum("packml_state")
    assert coater.machine.state() == "Stopped"
    assert await command(reader, spec, "Reset", 11) == codes["accepted_completes_later"]
    await run_until(coater, lambda: coater.machine.state() == "Idle", "Idle")
    assert await reader.value("state.packml_state") == packml["Idle"]
    assert await command(reader, spec, "Start", 12, text="LOT-42") == codes["accepted_completes_later"]
    await run_until(coater, lambda: coater.machine.state() == "Execute", "Execute")
    assert await reader.value("state.packml_state") == packml["Execute"]
    assert await reader.value("job.job_id") == "LOT-42"
    assert await command(reader, spec, "Start", 13) == codes["already_in_state"]
    assert await command(reader, spec, "Reset", 14) == codes["cannot_perform_now"]
    assert await command(reader, spec, "Teleport", 15) == codes["invalid_command"]
    assert await command(reader, spec, "SelectRecipe", 16, text="NOPE") == codes["no_such_object"]
    assert await command(reader, spec, "AcknowledgeAlarm", 17, number=424242) == codes["no_such_object"]
    run_count = coater.binding.commands_run
    assert await command(reader, spec, "Stop", 17) == codes["no_such_object"]  # seq 17 again: not run twice
    assert coater.binding.commands_run == run_count and coater.machine.state() == "Execute"
    assert await command(reader, spec, "Stop", 18) == codes["accepted_completes_later"]
    await run_until(coater, lambda: coater.machine.state() == "Stopped", "Stopped")
    mode = spec.enum("operation_mode")["Maintenance"]
    assert await command(reader, spec, "SetOperationMode", 19, number=mode) == codes["ok"]
    await coater.publish()
    assert await reader.value("state.operation_mode") == mode
    coater.machine.set_control_authority("Local")
    await coater.publish()
    assert await reader.value("state.control_authority") == spec.enum("control_authority")["Local"]
    assert await command(reader, spec, "Reset", 20) == codes["cannot_perform_now"]


async def read_event(reader: Reader, spec, seq: int) -> dict | None:
    a = reader.lay.areas
    await reader.write(a["events.request_seq"].address, codec.encode(seq, "uint32"))
    got = await reader.value("events.seq")
    if got == 0:
        return None
    assert got == seq
    n = await reader.value("events.payload_len")
    text = codec.decode(await reader.regs(a["events.payload"].address, (n + 1) // 2), "string")[:n]
    return {"seq": got, "type": spec.event_by_code[await reader.value("events.type")].id,
            "source_ts": await reader.value("events.source_ts") / 1000.0, "payload": json.loads(text) if n else {}}


async def test_events_are_read_in_order_through_the_mailbox(reader, coater, spec):
    m = coater.machine
    m.execute("Reset")
    await run_until(coater, lambda: m.state() == "Idle", "Idle")
    last = await reader.value("events.last_seq")
    assert last == m.last_seq and last >= 3
    events = [await read_event(reader, spec, s) for s in range(1, last + 1)]
    assert [e["seq"] for e in events] == list(range(1, last + 1))
    for got, env in zip(events, m.events):
        assert (got["type"], got["payload"]) == (env["type"], env["payload"])
        assert got["source_ts"] == pytest.approx(env["source_ts"], abs=0.002)
    states = [e["payload"]["current"] for e in events if e["type"] == "StateChanged"
              and e["payload"]["variable"] == "packml_state"]
    assert states == ["Resetting", "Idle"]
    assert await read_event(reader, spec, last + 100) is None
    assert await read_event(reader, spec, 0) is None


async def test_alarm_bits_follow_the_catalogue(reader, coater, spec):
    catalogue = spec.alarms("coater")
    words = reader.lay.areas["alarms.active"]
    assert await reader.regs(words.address, words.count) == [0] * words.count
    for index in (0, len(catalogue) - 1):
        coater.machine.raise_alarm(catalogue[index].code)
    await coater.publish()
    got = await reader.regs(words.address, words.count)
    expected = [0] * words.count
    for index in (0, len(catalogue) - 1):
        expected[index // 16] |= 1 << (index % 16)
    assert got == expected
    coater.machine.clear_alarm(catalogue[0].code)
    await coater.publish()
    assert (await reader.regs(words.address, 1))[0] & 1 == 0


async def test_writes_reach_writable_variables_only(reader, coater, spec):
    p = reader.lay.point("web.line_speed_setpoint")
    await reader.write(p.address, codec.encode(42.5, "float32"))
    assert coater.machine.get("web.line_speed_setpoint") == 42.5
    await reader.write(p.address, codec.encode(1e6, "float32"))  # out of the spec range: refused
    assert coater.machine.get("web.line_speed_setpoint") == 42.5
    assert await reader.value("web.line_speed_setpoint") == 42.5
    marker = reader.lay.areas["marker"]
    await reader.write(marker.address, [0, 0])  # read-only: put back
    assert codec.decode(await reader.regs(marker.address, 2), "string") == "LnGw"


async def read_window(reader: Reader, seq: int, between=None) -> tuple[int, dict | None, int]:
    """Select `seq` and read the mailbox window in its two requests (events.seq first, events.seq_check last);
    `between` runs between the two requests. Returns (events.seq, the event as read, events.seq_check)."""
    a = reader.lay.areas
    start, end = a["events.seq"].address, a["events.seq_check"].end
    assert end - start == 2 * MAX_REGS, "the window is read in exactly two requests"
    await reader.write(a["events.request_seq"].address, codec.encode(seq, "uint32"))
    regs = (await reader.regs(start, MAX_REGS))
    if between is not None:
        await between()
    regs += await reader.regs(start + MAX_REGS, MAX_REGS)

    def field(name: str):
        p = a[name]
        return codec.decode(regs[p.address - start:p.end - start], p.dtype,
                            count=p.count if p.dtype == "string" else None)

    n = field("events.payload_len")
    payload = json.loads(field("events.payload")[:n]) if n else {}
    return field("events.seq"), {"type": field("events.type"), "payload": payload}, field("events.seq_check")


async def test_a_second_client_cannot_tear_an_event_read(coater, spec):
    """Spec 1.1 (rule modbus.mailbox.check): the window ends with events.seq_check. A second client selecting
    another event between a reader's two requests shows there, so the reader never takes a torn event; two
    readers running at once each get every event as the machine holds it."""
    m = coater.machine
    m.execute("Reset")
    await run_until(coater, lambda: m.state() == "Idle", "Idle")
    await coater.publish()
    last = m.last_seq
    assert last >= 4
    clients = [AsyncModbusTcpClient("127.0.0.1", port=coater.binding.port) for _ in range(2)]
    try:
        for c in clients:
            assert await c.connect()
        lay = layout(spec.core, spec.get_class("coater"))
        a, b = (Reader(c, lay) for c in clients)
        expected = {e["seq"]: e for e in m.events}

        # A torn read, made on purpose: b selects another event between a's two requests.
        async def b_selects_another() -> None:
            await b.write(lay.areas["events.request_seq"].address, codec.encode(last, "uint32"))

        shown, event, check = await read_window(a, 1, between=b_selects_another)
        assert shown == 1 and check == last != 1, "the second request shows b's selection: a reader ignoring it takes a torn event"

        # Two readers at once, each taking an event only when seq and seq_check both show its seq.
        async def read_all(r: Reader) -> tuple[dict[int, dict], int]:
            got, retries = {}, 0
            for _ in range(3):
                for seq in range(1, last + 1):
                    while True:
                        shown, event, check = await read_window(r, seq)
                        if shown == check == seq:
                            got[seq] = event
                            break
                        retries += 1
                        assert retries < 1000
            return got, retries

        (got_a, _), (got_b, _) = await asyncio.gather(read_all(a), read_all(b))
        for got in (got_a, got_b):
            assert sorted(got) == list(range(1, last + 1))
            for seq, event in got.items():
                assert event["payload"] == expected[seq]["payload"], seq
                assert event["type"] == spec.events[expected[seq]["type"]].code, seq
    finally:
        for c in clients:
            c.close()
