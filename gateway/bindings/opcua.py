"""The spec's native profile over OPC UA (interface_spec/docs/opcua.md).

Each machine is an object under Objects/<machines folder>; its variables are nodes found by
browse path, its active alarms one array of codes, its commands and its event reader methods.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.adapters.base import Point, RawReading
from gateway.bindings.base import Binding, Envelope, NativeIO
from gateway.mapping.compile import Plan, equipment_variables, target
from interface_spec import Spec, split_path
from interface_spec.opcua_map import (
    ACTIVE_ALARMS,
    ALARMS_FOLDER,
    COMMANDS_FOLDER,
    EVENTS_FOLDER,
    EVENTS_LAST_SEQ,
    EVENTS_READ,
    RECIPES_FOLDER,
    RECIPES_GET,
    RECIPES_LIST,
    RECIPES_PUT,
    SELF_DESCRIPTION,
    pascal,
    relative_path,
)

UA_NS = "http://opcfoundation.org/UA/"


def machine_path(spec: Spec, machine: str) -> str:
    return f"/Objects/{spec.core.opcua.machines_folder}/{machine}"


class OpcUaBinding(Binding):
    protocol = "opcua"

    def plan(self, spec: Spec, equipment: str, cls: str, machine: str, counts: dict[str, int],
             only: set[str] | None = None) -> Plan:
        ns = spec.core.opcua.namespace_uri
        root = ["Objects", spec.core.opcua.machines_folder, machine]
        base = "/" + "/".join(root)
        points, targets = [], {}
        for path, d in equipment_variables(spec, cls, counts).items():
            if only is not None and path not in only:
                continue
            _, index = split_path(path)
            rel = relative_path(d.sub_unit, d.var.id, index)
            opts: dict[str, Any] = {"browse_path": base + "/" + "/".join(rel), "namespace": ns}
            if d.var.sampling_ms:
                opts["sampling_ms"] = d.var.sampling_ms
            points.append(Point(path, opts))
            targets[path] = [target(spec, cls, path)]
        plan = Plan(equipment, cls, "opcua", True, points, targets, counts=counts, opcua_machine=root, namespace=ns)
        if only is not None:
            return plan
        plan.alarm_codes_key = "alarms.active"
        points.append(Point("alarms.active", {"browse_path": f"{base}/{ALARMS_FOLDER}/{ACTIVE_ALARMS}", "namespace": ns}))
        points.append(Point("events.last_seq", {"browse_path": f"{base}/{EVENTS_FOLDER}/{EVENTS_LAST_SEQ}", "namespace": ns}))
        points.append(Point("events.read", {"object": f"{base}/{EVENTS_FOLDER}", "method": f"{base}/{EVENTS_FOLDER}/{EVENTS_READ}",
                                            "namespace": ns}))
        for cmd in spec.commands:
            method = pascal(cmd) if "_" in cmd else cmd
            points.append(Point(f"cmd:{cmd}", {"object": f"{base}/{COMMANDS_FOLDER}", "method": f"{base}/{COMMANDS_FOLDER}/{method}",
                                               "namespace": ns}))
        return plan

    def kit_points(self, spec: Spec, cls: str, machine: str, plan: Plan) -> list[Point]:
        ns = spec.core.opcua.namespace_uri
        base = machine_path(spec, machine)
        out = [Point("self_description", {"browse_path": f"{base}/{SELF_DESCRIPTION}", "namespace": ns, "scan": False})]
        for name, key in ((RECIPES_LIST, "recipes.list"), (RECIPES_GET, "recipes.get"), (RECIPES_PUT, "recipes.put")):
            out.append(Point(key, {"object": f"{base}/{RECIPES_FOLDER}", "method": f"{base}/{RECIPES_FOLDER}/{name}", "namespace": ns}))
        for p in plan.points:
            if "browse_path" not in p.options or p.key.startswith(("alarms.", "events.")):
                continue
            var = spec.variable(cls, p.key).var
            if var.type in ("float", "int", "uint"):
                for prop, key in (("EngineeringUnits", "eu"), ("EURange", "range")):
                    out.append(Point(f"{key}:{p.key}", {"browse_path": f"{p.options['browse_path']}/{{{UA_NS}}}{prop}",
                                                        "namespace": ns, "scan": False}))
        return out

    async def command(self, io: NativeIO, spec: Spec, name: str, args: list[Any], timeout: float) -> int | None:
        # Every argument is sent, an optional one left out as its empty value: "" or 0 (the rule opcua.arguments).
        params = spec.commands[name].params
        sent = [("" if p.type == "string" else 0) if a is None else a for a, p in zip(args, params)]
        out = await io.call(f"cmd:{name}", sent)
        return int(out[0]) if out else None

    async def read_events(self, io: NativeIO, spec: Spec, first: int, count: int) -> list[Envelope]:
        out = await io.call("events.read", [first, count])
        items = out[0] if out and isinstance(out[0], list) else out
        envelopes: list[Envelope] = []
        for text in items or []:
            try:
                env = json.loads(text)
            except (TypeError, ValueError):
                env = None
            # Kept, not dropped: an envelope that is not a JSON object is evidence of the machine's fault.
            envelopes.append(env if isinstance(env, dict) else {"invalid_envelope": text})
        return envelopes

    async def self_description(self, io: NativeIO, spec: Spec, cls: str, machine: str) -> tuple[str | None, str]:
        r = (await io.read(["self_description"]))["self_description"]
        where = f"{machine_path(spec, machine)}/{SELF_DESCRIPTION}"
        if r.error:
            return None, f"{where}: {r.error}"
        return (r.value if isinstance(r.value, str) else None), where

    def alarm_keys(self, plan: Plan) -> list[str]:
        return ["alarms.active"]

    def alarm_codes(self, spec: Spec, cls: str, plan: Plan, raw: dict[str, RawReading]) -> tuple[list[int] | None, str]:
        r = raw.get("alarms.active")
        if r is None or r.error:
            return None, r.error if r and r.error else "not read"
        return [int(c) for c in r.value or []], f"Alarms/ActiveCodes = {r.value}"
