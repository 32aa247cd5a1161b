"""The spec's native Modbus binding for a machine, served by a ModbusSimServer.

The register map is exactly `interface_spec.modbus_map.layout()`: the marker,
the common block, the binding areas (alarm bit words, command handshake,
events mailbox), the class block, the end header, and the self-description
JSON at `dictionary.*`. Values are encoded with the gateway's codec, and only
changed values are encoded on each publish.

Client writes arrive through `on_write`, after the server stored them:

* a write that covers `command.seq` runs the command in `command.code` with
  `command.param_int` / `command.param_text` and publishes
  `result_code`, then `result_seq = seq`. A repeated seq is not run twice.
* a write that covers `events.request_seq` presents that event in the
  mailbox, or seq 0 when the ring no longer holds it.
* a write to a writable variable (access rw) goes to the machine; a value it
  refuses is overwritten with the machine's value.
* a write anywhere else is undone: the map is read-only there.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from interface_spec import modbus_codec as codec
from interface_spec.modbus_map import ModbusPoint, layout
from simulators.machine import Machine
from simulators.servers.modbus_server import ModbusSimServer
from simulators.servers.register_image import RegisterImage

log = logging.getLogger("linegw.sim.modbus_binding")

END_BLOCK = 0xFFFF
PUBLISH_SLICE = 1024  # values encoded and stored between two turns of the event loop
CMD_INPUTS = ("command.code", "command.seq", "command.param_int", "command.param_text")


class _Slot:
    """One point of the map with its encoder and decoder."""

    __slots__ = ("decode", "encode", "point")

    def __init__(self, point: ModbusPoint):
        self.point = point
        count = point.count if point.dtype == "string" else None
        self.encode: Callable[[Any], list[int]] = codec.encoder(point.dtype, "ABCD", count=count)
        self.decode: Callable[[Any], Any] = codec.decoder(point.dtype, "ABCD", count=count)


class ModbusBinding:
    """Serves one machine over the conforming Modbus map."""

    protocol = "modbus"

    def __init__(self, machine: Machine, host: str = "127.0.0.1", port: int = 0):
        self.machine = machine
        spec = machine.spec
        self.lay = layout(spec.core, spec.get_class(machine.cls))
        self.server = ModbusSimServer(host, port, on_write=self._on_write)
        # The map: marker to end header, and the self-description; anything else answers exception 2
        # (the rule modbus.outside-map). The other tables are not part of the map at all.
        areas = self.lay.areas
        self.server.served = {"holding": [range(areas["marker"].address, areas["end.header"].end),
                                          range(areas["dictionary.length"].address, areas["dictionary.text"].end)],
                              "input": [], "coil": [], "discrete": []}
        self.image = RegisterImage(self.server)
        self.host = host
        by_name = {p.name: p for p in self.lay.points}
        self.slots: dict[str, _Slot] = {path: _Slot(by_name[path]) for path in machine.values}
        self.areas: dict[str, _Slot] = {name: _Slot(p) for name, p in self.lay.areas.items() if p.count}
        # Registers a client may write: the command and mailbox inputs, and the rw variables.
        writable = self.image.writable
        for name in CMD_INPUTS + ("events.request_seq",):
            p = self.lay.areas[name]
            writable.update(range(p.address, p.end))
        self._rw_paths: dict[int, str] = {}
        for path, var in machine.variables.items():
            if var.access == "rw":
                p = self.slots[path].point
                writable.update(range(p.address, p.end))
                for a in range(p.address, p.end):
                    self._rw_paths[a] = path
        self._alarms_version = -1
        self._last_seq = -1
        self._last_cmd_seq: int | None = None
        self.commands_run = 0

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"modbus://{self.host}:{self.server.port}"

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self._publish_static()
        await self.publish(dict(self.machine.values))
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    async def restart(self, downtime_s: float = 0.0, **_: Any) -> None:
        """Close the port and every connection, then listen again: a device reboot."""
        await self.server.stop()
        if downtime_s > 0:
            await asyncio.sleep(downtime_s)
        await self.server.start()

    def drop_connections(self) -> None:
        self.server.faults.drop_connections()

    # --- publishing ---------------------------------------------------------------------------
    def _put(self, address: int, regs: list[int]) -> None:
        self.image.put(address, regs)

    def _put_area(self, name: str, value: Any) -> None:
        slot = self.areas[name]
        self._put(slot.point.address, slot.encode(value))

    def _publish_static(self) -> None:
        spec, cls = self.machine.spec, self.machine.spec.get_class(self.machine.cls)
        mb = spec.core.modbus
        self._put_area("marker", mb.marker)
        self._put(self.lay.areas["common.header"].address, [mb.common_block, mb.common_length])
        self._put(self.lay.areas["class.header"].address, [cls.modbus_block, cls.modbus_length])
        self._put(self.lay.areas["end.header"].address, [mb.end_block, 0])
        text = json.dumps(self.machine.self_description(), separators=(",", ":"), ensure_ascii=True)
        if len(text) > mb.dictionary_max_chars:
            raise ValueError(f"self-description is {len(text)} characters, the map holds {mb.dictionary_max_chars}")
        self._put_area("dictionary.length", len(text))
        self._put_area("dictionary.text", text)
        for name in ("command.result_seq", "command.result_code", "events.seq", "events.type",
                     "events.source_ts", "events.payload_len", "events.seq_check"):
            self._put_area(name, 0)
        self._put_area("events.payload", "")

    async def publish(self, changes: dict[str, Any]) -> None:
        """Encode and store the changed values; alarm words and the event sequence when they moved.

        A rack's tick changes thousands of values (30 ms of work): they go in slices, the event loop free
        in between, so that the requests of clients (and of other machines served by this process) are
        answered meanwhile, as a device's comms task answers while its control task updates. A value's
        registers are always written at once.
        """
        slots = self.slots
        items = list(changes.items())
        for first in range(0, len(items), PUBLISH_SLICE):
            if first:
                await asyncio.sleep(0)
            writes = []
            for path, value in items[first:first + PUBLISH_SLICE]:
                slot = slots.get(path)
                if slot is None:
                    continue
                try:
                    writes.append((slot.point.address, slot.encode(value)))
                except ValueError as exc:
                    log.warning("%s: %s cannot be served over Modbus: %s", self.machine.equipment_id, path, exc)
            self.image.put_many(writes)
        m = self.machine
        if m.alarms_version != self._alarms_version:
            self._alarms_version = m.alarms_version
            self._put(self.lay.areas["alarms.active"].address, m.alarm_words())
        if m.last_seq != self._last_seq:
            self._last_seq = m.last_seq
            self._put_area("events.last_seq", m.last_seq)

    def address_of(self, path: str) -> tuple[int, int]:
        """Registers (first, count) of a spec path, for fault injection."""
        p = self.slots[path].point
        return p.address, p.count

    # --- client writes --------------------------------------------------------------------------
    def _read(self, name: str) -> Any:
        slot = self.areas[name]
        p = slot.point
        return slot.decode(self.server.get_registers(p.address, p.count))

    def _covers(self, name: str, address: int, count: int) -> bool:
        p = self.lay.areas[name]
        return address < p.end and p.address < address + count

    def _on_write(self, table: str, address: int, values: list) -> None:
        if table != "holding":
            return
        count = len(values)
        self.image.undo(address, count)
        self.image.accept(address, count)
        touched = {self._rw_paths[a] for a in range(address, address + count) if a in self._rw_paths}
        for path in touched:
            slot = self.slots[path]
            p = slot.point
            value = slot.decode(self.server.get_registers(p.address, p.count))
            if not self.machine.write(path, value):
                self._put(p.address, slot.encode(self.machine.values[path]))
        if self._covers("command.seq", address, count):
            self._run_command()
        if self._covers("events.request_seq", address, count):
            self._present_event(self._read("events.request_seq"))

    def _run_command(self) -> None:
        seq = self._read("command.seq")
        if seq == self._last_cmd_seq:
            return
        self._last_cmd_seq = seq
        spec = self.machine.spec
        cmd = spec.command_by_code.get(self._read("command.code"))
        if cmd is None:
            code = spec.result_codes["invalid_command"]
        else:
            number, text = self._read("command.param_int"), self._read("command.param_text")
            params: dict[str, Any] = {}
            for p in cmd.params:
                if p.type in ("int", "enum"):
                    params[p.name] = number
                elif text:
                    params[p.name] = text
            code = self.machine.execute(cmd.id, params)
        self.commands_run += 1
        self._put_area("command.result_code", code)
        self._put_area("command.result_seq", seq)

    def _present_event(self, seq: int) -> None:
        env = self.machine.event(seq) if seq > 0 else None
        if env is None:
            for name in ("events.seq", "events.type", "events.source_ts", "events.payload_len", "events.seq_check"):
                self._put_area(name, 0)
            self._put_area("events.payload", "")
            return
        limit = self.machine.spec.core.modbus.event_payload_chars
        text = json.dumps(env["payload"], separators=(",", ":"), ensure_ascii=True)
        if len(text) > limit:
            log.warning("%s: event %d payload is %d characters, the mailbox holds %d; served cut short",
                        self.machine.equipment_id, seq, len(text), limit)
            text = text[:limit]
        self._put_area("events.type", self.machine.spec.events[env["type"]].code)
        self._put_area("events.source_ts", int(env["source_ts"] * 1000))
        self._put_area("events.payload_len", len(text))
        self._put_area("events.payload", text)
        self._put_area("events.seq", seq)
        self._put_area("events.seq_check", seq)
