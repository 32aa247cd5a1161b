"""The example protocol's native profile: a JSON file that speaks the spec directly.

A machine that writes the spec's own paths as keys (`"winding.speed": 123.4`,
`"state.packml_state": 1`) needs no mapping file: this binding says where each spec
element lives in the file. Alarms are `"alarms.active": [codes]`, events an
`"events"` list of spec envelopes with `"events.last_seq"`, and a command is written
as `"command": {"name": ..., "args": [...], "seq": n}`, whose completion the gateway
reads back from the state, as with any method that gives no result.
"""

from __future__ import annotations

from typing import Any

from gateway.adapters.base import Point, RawReading
from gateway.bindings import Binding, Envelope, NativeIO
from gateway.mapping.compile import Plan, equipment_variables, target
from interface_spec import Spec


class JsonFileBinding(Binding):
    protocol = "jsonfile"

    def plan(self, spec: Spec, equipment: str, cls: str, machine: str, counts: dict[str, int],
             only: set[str] | None = None) -> Plan:
        paths = [p for p in equipment_variables(spec, cls, counts) if only is None or p in only]
        points = [Point(p, {"node": p}) for p in paths]
        plan = Plan(equipment, cls, self.protocol, True, points, {p: [target(spec, cls, p)] for p in paths}, counts=counts)
        if only is None:
            points += [Point("alarms.active", {"node": "alarms.active"}), Point("events.last_seq", {"node": "events.last_seq"}),
                       Point("events", {"node": "events", "scan": False}), Point("command", {"node": "command", "scan": False}),
                       Point("self_description", {"node": "self_description", "scan": False})]
            plan.alarm_codes_key = "alarms.active"
        return plan

    async def command(self, io: NativeIO, spec: Spec, name: str, args: list[Any], timeout: float) -> int | None:
        async with io.lock:
            await io.write("command", {"name": name, "args": args, "seq": io.next_seq()})
        return None

    async def read_events(self, io: NativeIO, spec: Spec, first: int, count: int) -> list[Envelope]:
        r = (await io.read(["events"]))["events"]
        events = [e for e in (r.value or []) if isinstance(e, dict) and isinstance(e.get("seq"), int)]
        return sorted((e for e in events if e["seq"] >= first), key=lambda e: e["seq"])[:count]

    async def self_description(self, io: NativeIO, spec: Spec, cls: str, machine: str) -> tuple[str | None, str]:
        r = (await io.read(["self_description"]))["self_description"]
        return (None, f"self_description: {r.error}") if r.error else (r.value, "key self_description")

    def alarm_keys(self, plan: Plan) -> list[str]:
        return ["alarms.active"]

    def alarm_codes(self, spec: Spec, cls: str, plan: Plan, raw: dict[str, RawReading]) -> tuple[list[int] | None, str]:
        r = raw.get("alarms.active")
        if r is None or r.error:
            return None, r.error if r and r.error else "not read"
        return [int(c) for c in r.value or []], f"alarms.active = {r.value}"
