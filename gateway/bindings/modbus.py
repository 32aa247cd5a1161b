"""The spec's native profile over Modbus TCP (interface_spec/docs/modbus.md).

Values live at fixed holding registers; the active alarms are bit words in the catalogue's
order; a command is a handshake (code and parameters, then seq last, then wait for
result_seq == seq); an event is read by writing its seq to the mailbox's request register
and reading the window back. The command area and the mailbox are one window for every
client: a read of the mailbox is taken when `events.seq` (first request) and `events.seq_check` (last
request) both show the asked seq (spec 1.1), or, from a machine that leaves `seq_check` at 0 (1.0), when it
reads the same twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from gateway.adapters.base import AdapterError, Point, RawReading
from gateway.bindings.base import Binding, Envelope, NativeIO, NoCommandResult
from gateway.mapping.compile import Plan, equipment_variables, target
from interface_spec import Spec
from interface_spec.modbus_map import layout

log = logging.getLogger("linegw.bindings.modbus")

EVENT_KEYS = ["events.seq", "events.type", "events.source_ts", "events.payload_len", "events.payload",
              "events.seq_check"]
KIT_AREAS = ("marker", "common.header", "class.header", "end.header", "dictionary.length", "dictionary.text")
POLL_S = 0.02  # how often a command's result is asked for
TORN_READS = 5  # how many times a mailbox read torn by another client is taken again


def outside_map(spec: Spec, cls: str) -> dict[str, int]:
    """A register just outside each edge of a class's map, by where it is."""
    lay = layout(spec.core, spec.get_class(cls))
    a = lay.areas
    out = {"after the end header": a["end.header"].end, "after the self-description": a["dictionary.text"].end}
    if a["marker"].address > 0:
        out["before the marker"] = a["marker"].address - 1
    if a["dictionary.length"].address > 0 and a["dictionary.length"].address - 1 >= a["end.header"].end:
        out["before the self-description"] = a["dictionary.length"].address - 1
    return {k: v for k, v in out.items() if 0 <= v < 65536}


class ModbusBinding(Binding):
    protocol = "modbus"

    def plan(self, spec: Spec, equipment: str, cls: str, machine: str, counts: dict[str, int],
             only: set[str] | None = None) -> Plan:
        lay = layout(spec.core, spec.get_class(cls))
        by_name = {p.name: p for p in lay.points}
        points, targets = [], {}
        for path in equipment_variables(spec, cls, counts):
            if only is not None and path not in only:
                continue
            mp = by_name[path]
            points.append(Point(path, {"table": "holding", "address": mp.address, "dtype": mp.dtype, "count": mp.count,
                                       "order": "ABCD"}))
            targets[path] = [target(spec, cls, path)]
        plan = Plan(equipment, cls, "modbus", True, points, targets, counts=counts)
        if only is not None:
            return plan
        words = lay.areas["alarms.active"]
        for i in range(words.count):
            key = f"alarms.active[{i}]"
            points.append(Point(key, {"table": "holding", "address": words.address + i, "dtype": "uint16"}))
            plan.alarm_words.append(key)
        for name, area in lay.areas.items():
            if name.startswith(("command.", "events.")):
                # Read and written on demand (handshake, mailbox), never scanned.
                pt = Point(name, {"table": "holding", "address": area.address, "dtype": area.dtype, "count": area.count,
                                  "order": "ABCD", "scan": False})
                plan.modbus_areas[name] = pt
                points.append(pt)
        # The newest event sequence is scanned with the values; the rest is read on demand.
        last = plan.modbus_areas["events.last_seq"]
        points[points.index(last)] = Point(last.key, {**last.options, "scan": True})
        return plan

    def kit_points(self, spec: Spec, cls: str, machine: str, plan: Plan) -> list[Point]:
        lay = layout(spec.core, spec.get_class(cls))
        out = []
        for name in KIT_AREAS:
            a = lay.areas[name]
            # A block header (id, length) is read as one uint32: id in the high word.
            dtype, count = ("uint32", 2) if name.endswith(".header") else (a.dtype, a.count)
            out.append(Point(f"area:{name}", {"table": "holding", "address": a.address, "dtype": dtype, "count": count,
                                              "scan": False}))
        # One register just outside each edge of the map: each must answer exception 2 (rule modbus.outside-map).
        for name, address in outside_map(spec, cls).items():
            out.append(Point(f"outside:{name}", {"table": "holding", "address": address, "dtype": "uint16",
                                                 "scan": False}))
        return out

    # --- commands -----------------------------------------------------------------------------
    async def command(self, io: NativeIO, spec: Spec, name: str, args: list[Any], timeout: float) -> int | None:
        cmd = spec.commands[name]
        number = next((a for a, p in zip(args, cmd.params) if p.type in ("int", "enum") and a is not None), 0)
        text = next((a for a, p in zip(args, cmd.params) if p.type == "string" and a is not None), "")
        return await self.handshake(io, cmd.code, number, text, timeout)

    async def raw_command(self, io: NativeIO, code: int, timeout: float) -> int | None:
        return await self.handshake(io, code, 0, "", timeout)

    async def handshake(self, io: NativeIO, code: int, number: int, text: str, timeout: float) -> int:
        """Code and parameters, seq last; then wait until result_seq == seq and take result_code."""
        async with io.lock:
            seq = io.next_seq()
            for key, value in (("command.code", code), ("command.param_int", number), ("command.param_text", text),
                               ("command.seq", seq)):
                await io.write(key, value)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                r = await io.read(["command.result_seq", "command.result_code"])
                if not r["command.result_seq"].error and r["command.result_seq"].value == seq:
                    return int(r["command.result_code"].value)
                await asyncio.sleep(POLL_S)
        raise NoCommandResult(f"no result for command seq {seq} (code {code}) within {timeout:g} s")

    # --- events -------------------------------------------------------------------------------
    async def read_events(self, io: NativeIO, spec: Spec, first: int, count: int) -> list[Envelope]:
        out: list[Envelope] = []
        for seq in range(first, first + count):
            env = await self.mailbox(io, spec, seq)
            if env is None:
                break
            out.append(env)
        return out

    async def mailbox(self, io: NativeIO, spec: Spec, seq: int) -> Envelope | None:
        """Present one event in the mailbox and read it; None when the ring no longer holds it."""
        async with io.lock:
            # The mailbox is one window for every client: a read is taken as the event only when it was not torn
            # by another client selecting another event between its two requests.
            for _ in range(TORN_READS):
                await io.select("events.request_seq", seq)
                r = await io.read(EVENT_KEYS)
                shown, check = r["events.seq"].value, r["events.seq_check"].value
                if shown == check == seq:
                    break
                if check != 0:  # another client's selection showed in one of the two requests
                    continue
                again = await io.read(EVENT_KEYS)  # a 1.0 machine (no seq_check), or an event no longer held
                if [x.value for x in r.values()] == [x.value for x in again.values()] and shown in (seq, 0):
                    break
            else:
                # Torn every time: not an event the ring lost (that would skip it), one to read again later.
                raise AdapterError(f"event {seq}: the mailbox read was torn by another client {TORN_READS} times")
        bad = [x.error for x in r.values() if x.error]
        if bad:
            raise AdapterError(bad[0])
        if r["events.seq"].value != seq:
            return None
        code = r["events.type"].value
        etype = spec.event_by_code.get(code)
        text = (r["events.payload"].value or "")[: r["events.payload_len"].value]
        try:
            payload = json.loads(text) if text else {}
        except ValueError as exc:
            # Kept, not dropped: the raw text is evidence of the machine's fault.
            log.warning("event %d has a payload that is not JSON: %s", seq, exc)
            payload = {"invalid_payload": text, "error": str(exc)}
        return {"type": etype.id if etype else f"code {code}", "seq": seq,
                "source_ts": r["events.source_ts"].value / 1000.0, "payload": payload}

    # --- self-description and alarms -----------------------------------------------------------
    async def self_description(self, io: NativeIO, spec: Spec, cls: str, machine: str) -> tuple[str | None, str]:
        lay = layout(spec.core, spec.get_class(cls))
        got = await io.read(["area:dictionary.length", "area:dictionary.text"])
        n, text = got["area:dictionary.length"], got["area:dictionary.text"]
        where = f"holding registers {lay.areas['dictionary.length'].address}.."
        if n.error or text.error:
            return None, f"{where}: {n.error or text.error}"
        return (text.value or "")[: n.value], f"{where} (length {n.value})"

    def alarm_keys(self, plan: Plan) -> list[str]:
        return list(plan.alarm_words)

    def alarm_codes(self, spec: Spec, cls: str, plan: Plan, raw: dict[str, RawReading]) -> tuple[list[int] | None, str]:
        words = [raw.get(k) for k in plan.alarm_words]
        values: list[int] = []
        for w in words:
            if w is None or w.error:
                return None, next((x.error for x in words if x is not None and x.error), "not read")
            values.append(int(w.value))
        catalogue = spec.alarms(cls)
        codes = [a.code for i, a in enumerate(catalogue) if (values[i // 16] >> (i % 16)) & 1]
        extra = [i for i in range(16 * len(values)) if (values[i // 16] >> (i % 16)) & 1 and i >= len(catalogue)]
        codes += [-(i + 1) for i in extra]  # a bit beyond the catalogue: position, as a negative number
        return codes, f"alarm words = {values}"
