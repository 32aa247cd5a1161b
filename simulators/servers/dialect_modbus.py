"""A machine served over Modbus in a vendor's dialect.

Values go where the dialect says, in its data types and word orders, scaled
and enum-mapped; several bit fields may share one status register; alarms
are bits (in registers, coils or discrete inputs) and an optional alarm-code
register; a command register takes vendor codes and clears itself once the
machine has taken the command. There is no marker, no self-description, no
event mailbox and no result code: real vendor maps have none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from interface_spec import modbus_codec as codec
from simulators.dialects import register_count
from simulators.dialects.model import Dialect, Source
from simulators.machine import Machine
from simulators.servers.dialect import Projection, alarm_active, compile_projections, most_severe
from simulators.servers.modbus_server import ModbusSimServer
from simulators.servers.register_image import RegisterImage

log = logging.getLogger("linegw.sim.dialect_modbus")


class _Field:
    """A projection placed in the register map, with its codec."""

    __slots__ = ("address", "bit", "count", "decode", "encode", "proj", "table")

    def __init__(self, proj: Projection, order: str):
        src = proj.field
        self.proj = proj
        self.table = src.table
        self.address = proj.address if proj.address is not None else 0
        self.count = register_count(src)
        self.bit = src.bit
        if src.is_bit:
            self.encode: Callable[[Any], list[int]] = lambda v: [1 if v else 0]
            self.decode: Callable[[Any], Any] = lambda regs: regs[0]
        else:
            dtype = src.dtype or "uint16"
            self.encode = codec.encoder(dtype, src.order or order, count=src.count if dtype == "string" else None)
            self.decode = codec.decoder(dtype, src.order or order, count=src.count if dtype == "string" else None)


class DialectModbusBinding:
    protocol = "modbus"

    def __init__(self, dialect: Dialect, machine: Machine, host: str = "127.0.0.1", port: int = 0):
        self.dialect = dialect
        self.machine = machine
        defaults = dialect.modbus
        order = defaults.order if defaults else "ABCD"
        self.device_id = defaults.device_id if defaults else 1
        self.host = host
        self.server = ModbusSimServer(host, port, device_ids=(self.device_id,), on_write=self._on_write)
        self.image = RegisterImage(self.server)
        self.fields: dict[str, list[_Field]] = {
            path: [_Field(p, order) for p in projs] for path, projs in compile_projections(dialect, machine).items()}
        self._words: dict[tuple[str, int], int] = {}  # status registers made of bits
        self._writable: dict[int, _Field] = {}
        for fields in self.fields.values():
            for f in fields:
                if f.proj.field.writable and f.table == "holding":
                    for a in range(f.address, f.address + f.count):
                        self._writable[a] = f
        self.image.writable.update(self._writable)
        cmd = dialect.commands.register_
        self._cmd_codec: tuple[Source, Callable[[Any], Any]] | None = None
        self._cmd_codes = {code: name for name, code in dialect.commands.codes.items()}
        if cmd is not None and cmd.address is not None:
            dtype = cmd.dtype or "uint16"
            self._cmd_codec = (cmd, codec.decoder(dtype, cmd.order or order))
            self.image.writable.update(range(cmd.address, cmd.address + register_count(cmd)))
        self._alarms_version = -1
        self.commands_run = 0

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"modbus://{self.host}:{self.server.port}"

    async def start(self) -> None:
        await self.publish(dict(self.machine.values))
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    async def restart(self, downtime_s: float = 0.0, **_: Any) -> None:
        await self.server.stop()
        if downtime_s > 0:
            await asyncio.sleep(downtime_s)
        await self.server.start()

    def drop_connections(self) -> None:
        self.server.faults.drop_connections()

    def address_of(self, path: str) -> tuple[int, int]:
        f = self.fields[path][0]
        return f.address, f.count

    # --- publishing ------------------------------------------------------------------------------
    def _place(self, table: str, address: int, bit: int | None, regs: list[int]) -> None:
        if table in ("coil", "discrete"):
            self.server.set_coils(address, [bool(regs[0])], table=table)
        elif bit is not None:
            key = (table, address)
            word = self._words.get(key, 0)
            word = (word | (1 << bit)) if regs[0] else (word & ~(1 << bit))
            self._words[key] = word
            self.image.put(address, [word], table)
        else:
            self.image.put(address, regs, table)

    async def publish(self, changes: dict[str, Any]) -> None:
        fields = self.fields
        for path, value in changes.items():
            for f in fields.get(path, ()):
                try:
                    regs = f.encode(f.proj.to_raw(value))
                except (ValueError, TypeError) as exc:
                    log.warning("%s: %s cannot be served at %s %d: %s", self.machine.equipment_id, path, f.table,
                                f.address, exc)
                    continue
                self._place(f.table, f.address, f.bit, regs)
        if self.machine.alarms_version != self._alarms_version:
            self._alarms_version = self.machine.alarms_version
            self._publish_alarms()

    def _publish_alarms(self) -> None:
        m, d = self.machine, self.dialect
        for a in d.alarms:
            assert a.address is not None
            self._place(a.table, a.address, a.bit, [1 if alarm_active(m, a.alarm) else 0])
        ac = d.alarm_code
        if ac is not None and ac.address is not None:
            enc = codec.encoder(ac.dtype or "uint16", ac.order or (d.modbus.order if d.modbus else "ABCD"))
            self._place(ac.table, ac.address, None, enc(most_severe(m, ac.codes)))

    # --- client writes ----------------------------------------------------------------------------------
    def _on_write(self, table: str, address: int, values: list) -> None:
        if table != "holding":
            return
        count = len(values)
        self.image.undo(address, count)
        self.image.accept(address, count)
        touched = {id(self._writable[a]): self._writable[a] for a in range(address, address + count) if a in self._writable}
        for f in touched.values():
            raw = f.decode(self.server.get_registers(f.address, f.count))
            value = f.proj.from_raw(raw)
            if value is None or not self.machine.write(f.proj.path, value):
                self.image.put(f.address, f.encode(f.proj.to_raw(self.machine.values[f.proj.path])))
        if self._cmd_codec is not None:
            src, decode = self._cmd_codec
            assert src.address is not None
            n = register_count(src)
            if address < src.address + n and src.address < address + count:
                self._run_command(src, decode(self.server.get_registers(src.address, n)), n)

    def _run_command(self, src: Source, code: Any, n: int) -> None:
        assert src.address is not None
        if code == 0:
            return
        name = self._cmd_codes.get(int(code))
        if name is not None:
            self.machine.execute(name, {})
            self.commands_run += 1
        # The register clears itself: the device has taken (or ignored) the command.
        self.image.put(src.address, [0] * n)
