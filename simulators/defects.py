"""Deliberate defects: a conforming simulator that breaks one rule of the spec.

Faults (faults.py) are what field equipment suffers; defects are what a
non-conforming implementation gets wrong. They exist so that the conformance
kit can be shown to fail, each on the rule it checks. A defect is switched on
at start-up, as faults are:

    SimConfig("coater1", "coater", "opcua", defects=["wrong_unit:path=web.line_speed"])
    SimConfig("winder1", "winder", "modbus", defects=[{"name": "ignores_command", "command": "Reset"}])

Each one changes the running machine or its server from the outside, after
the server has started: wrapped methods, replaced encoders, rewritten
nodes. The normal code path knows nothing of them. Defects apply to the
conforming bindings only, and hold until the server restarts.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from interface_spec import modbus_codec as codec
from simulators.faults import parse_switches
from simulators.machine import COUNTS, HEARTBEAT, LOCAL_PANEL, PROFILE_OF_COMMAND

if TYPE_CHECKING:
    from simulators.simulator import Simulator

ACCEPTED = ("ok", "accepted_completes_later")


@dataclass(frozen=True)
class Defect:
    name: str
    doc: str
    bindings: tuple[str, ...]
    apply: Callable[..., Awaitable[None]]


DEFECTS: dict[str, Defect] = {}


def defect(name: str, doc: str, bindings: tuple[str, ...] = ("opcua", "modbus")) -> Callable[..., Any]:
    def register(fn: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        DEFECTS[name] = Defect(name, doc, bindings, fn)
        return fn

    return register


def parse_defects(defects: Any) -> list[tuple[str, dict[str, Any]]]:
    return parse_switches(defects, DEFECTS, "defect")


async def apply_defect(sim: Simulator, name: str, **params: Any) -> None:
    d = DEFECTS[name]
    protocol = sim.binding.protocol
    if sim.config.dialect != "conforming" or protocol not in d.bindings:
        raise ValueError(f"defect '{name}' is for the conforming {' and '.join(d.bindings)} binding, not "
                         f"{sim.config.dialect} {protocol}")
    await d.apply(sim, **params)


def _wrap(obj: Any, name: str, make: Callable[[Any], Any]) -> None:
    """Replace a method on this one object (its class and other instances are untouched)."""
    setattr(obj, name, make(getattr(obj, name)))


# --- the address space and the register map -----------------------------------------------------------

def _opcua_ident(sim: Simulator, path: str) -> Any:
    from asyncua import ua

    from interface_spec import split_path
    from interface_spec.opcua_map import relative_path

    b: Any = sim.binding
    d = sim.machine.spec.variable(sim.machine.cls, path)
    sub, leaf = relative_path(d.sub_unit, d.var.id, split_path(path)[1])
    return f"{b.machine_name}/{sub}/{leaf}", b.server.ns, ua


@defect("missing_variable", "a mandatory variable is not served: OPC UA without its node, Modbus refusing its "
                            "registers (illegal data address)")
async def _missing_variable(sim: Simulator, path: str = "web.line_speed") -> None:
    b: Any = sim.binding
    if b.protocol == "modbus":
        sim.faults.exception(path, "illegal_address")
        return
    server = b.server.server
    nid = b.nodes.pop(path)
    await server.delete_nodes([server.get_node(nid)], recursive=True)


@defect("wrong_type", "a variable of another data type: OPC UA Float for a Double; Modbus an int32 in the "
                      "registers of a float32")
async def _wrong_type(sim: Simulator, path: str = "web.line_speed") -> None:
    b: Any = sim.binding
    if b.protocol == "modbus":
        b.slots[path].encode = lambda v: codec.encode(round(v), "int32")
    else:
        from asyncua import ua

        aspace = b.server.server.iserver.aspace
        b.types[path] = ua.VariantType.Float
        await aspace.write_attribute_value(b.nodes[path], ua.AttributeIds.DataType,
                                           ua.DataValue(ua.Variant(ua.NodeId(ua.ObjectIds.Float), ua.VariantType.NodeId)))
        # A bad value first leaves it null: the server then takes the next value's type from the DataType.
        await aspace.write_attribute_value(b.nodes[path], ua.AttributeIds.Value, ua.DataValue(
            StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)))
    await b.publish({path: sim.machine.values[path]})


@defect("wrong_unit", "a variable's EngineeringUnits name another unit than the spec's", ("opcua",))
async def _wrong_unit(sim: Simulator, path: str = "web.line_speed") -> None:
    from interface_spec.opcua_map import EU_NAMESPACE_URI, unece_unit_id

    spec = sim.machine.spec
    ident, ns, ua = _opcua_ident(sim, path)
    own = spec.units[spec.variable(sim.machine.cls, path).var.unit]
    other = next(u for u in spec.units.values() if u.unece and u.unece != own.unece)
    eu = ua.EUInformation(NamespaceUri=EU_NAMESPACE_URI, UnitId=unece_unit_id(other.unece),
                          DisplayName=ua.LocalizedText(other.symbol), Description=ua.LocalizedText(other.name))
    await sim.binding.server.server.iserver.aspace.write_attribute_value(
        ua.NodeId(f"{ident}.EngineeringUnits", ns), ua.AttributeIds.Value,
        ua.DataValue(ua.Variant(eu, ua.VariantType.ExtensionObject)))


@defect("wrong_access", "a read-only variable whose AccessLevel lets clients write it", ("opcua",))
async def _wrong_access(sim: Simulator, path: str = "counters.processed_count") -> None:
    from asyncua import ua

    b: Any = sim.binding
    level = ua.AccessLevel.CurrentRead.mask | ua.AccessLevel.CurrentWrite.mask
    await b.server.server.iserver.aspace.write_attribute_value(
        b.nodes[path], ua.AttributeIds.AccessLevel, ua.DataValue(ua.Variant(level, ua.VariantType.Byte)))


@defect("word_order", "32- and 64-bit values with the low word first (CDAB) instead of ABCD", ("modbus",))
async def _word_order(sim: Simulator) -> None:
    b: Any = sim.binding
    for slot in b.slots.values():
        dtype = slot.point.dtype
        if dtype[-2:] in ("32", "64"):
            slot.encode = codec.encoder(dtype, "CDAB")
    await sim.publish_all()


@defect("bad_self_description", "a self-description without its 'profiles' field (invalid against the schema)")
async def _bad_self_description(sim: Simulator) -> None:
    desc = sim.machine.self_description()
    del desc["profiles"]
    text = json.dumps(desc, separators=(",", ":"))
    b: Any = sim.binding
    if b.protocol == "modbus":
        b._put_area("dictionary.length", len(text))
        b._put_area("dictionary.text", text)
        return
    from asyncua import ua

    from interface_spec.opcua_map import SELF_DESCRIPTION

    await b.server.server.iserver.aspace.write_attribute_value(
        ua.NodeId(f"{b.machine_name}/{SELF_DESCRIPTION}", b.server.ns), ua.AttributeIds.Value,
        ua.DataValue(ua.Variant(text, ua.VariantType.String)))


# --- values ----------------------------------------------------------------------------------------------

@defect("out_of_range", "a value beyond its plausibility range")
async def _out_of_range(sim: Simulator, path: str = "web.line_speed") -> None:
    sim.faults.out_of_range(path)
    await sim.publish()


@defect("bad_state_code", "state.packml_state serves a code that is no PackML state")
async def _bad_state_code(sim: Simulator, code: int = 42) -> None:
    sim.faults.values.overrides["state.packml_state"] = int(code)
    await sim.publish()


@defect("frozen_values", "every process value (sample category) stops changing; the heartbeat goes on")
async def _frozen_values(sim: Simulator) -> None:
    for path, var in sim.machine.variables.items():
        if var.category.value == "sample" and path != HEARTBEAT:
            sim.faults.values.frozen.add(path)


@defect("heartbeat_stopped", "status.heartbeat stops counting")
async def _heartbeat_stopped(sim: Simulator) -> None:
    sim.faults.freeze(HEARTBEAT)


# --- behaviour -------------------------------------------------------------------------------------------

@defect("accepts_wrong_state", "a command answers accepted_completes_later in states the transition table "
                               "refuses it in (and does nothing)")
async def _accepts_wrong_state(sim: Simulator, command: str = "Start") -> None:
    m = sim.machine

    def make(execute: Callable[..., int]) -> Callable[..., int]:
        def wrong(name: str, params: dict[str, Any] | None = None, source: str = "remote") -> int:
            if name == command and m.spec.packml_command(m.state(), name).result not in ACCEPTED:
                return m.spec.result_codes["accepted_completes_later"]
            return execute(name, params, source)
        return wrong

    _wrap(m, "execute", make)


@defect("ignores_command", "a command answers what the table says but the machine does nothing")
async def _ignores_command(sim: Simulator, command: str = "Reset") -> None:
    m = sim.machine

    def make(execute: Callable[..., int]) -> Callable[..., int]:
        def deaf(name: str, params: dict[str, Any] | None = None, source: str = "remote") -> int:
            if name == command and source != LOCAL_PANEL:
                outcome = m.spec.packml_command(m.state(), name)
                return m.spec.result_codes[outcome.result]
            return execute(name, params, source)
        return deaf

    _wrap(m, "execute", make)


@defect("local_ignored", "commands are taken while the control authority is Local")
async def _local_ignored(sim: Simulator) -> None:
    def make(execute: Callable[..., int]) -> Callable[..., int]:
        return lambda name, params=None, source="remote": execute(name, params, LOCAL_PANEL)

    _wrap(sim.machine, "execute", make)


@defect("alarm_never_clears", "an alarm stays in the active set after its AlarmCleared event")
async def _alarm_never_clears(sim: Simulator) -> None:
    m = sim.machine
    ever: set[int] = set()
    m.event_listeners.append(lambda env: ever.add(env["payload"]["alarm_code"]) if env["type"] == "AlarmRaised" else None)
    _wrap(m, "active_alarm_codes", lambda codes: lambda: sorted(set(codes()) | ever))


@defect("transition_without_event", "no StateChanged event for the PackML transitions into one state")
async def _transition_without_event(sim: Simulator, state: str = "Execute") -> None:
    def make(emit: Callable[..., Any]) -> Callable[..., Any]:
        def quiet(event_type: str, payload: dict[str, Any]) -> Any:
            if event_type == "StateChanged" and payload.get("variable") == "packml_state" and payload.get("current") == state:
                return None
            return emit(event_type, payload)
        return quiet

    _wrap(sim.machine, "emit", make)


@defect("unit_without_links", "UnitProcessed events with an empty made_from list")
async def _unit_without_links(sim: Simulator) -> None:
    def make(emit: Callable[..., Any]) -> Callable[..., Any]:
        return lambda event_type, payload: emit(event_type, {**payload, "made_from": []}
                                                if event_type == "UnitProcessed" else payload)

    _wrap(sim.machine, "emit", make)


@defect("event_seq_gap", "event sequence numbers skip one after every few events")
async def _event_seq_gap(sim: Simulator, every: int = 3) -> None:
    m = sim.machine
    every = max(1, int(every))

    def make(emit: Callable[..., Any]) -> Callable[..., Any]:
        def gappy(event_type: str, payload: dict[str, Any]) -> Any:
            env = emit(event_type, payload)
            if m.last_seq % every == 0:
                m.last_seq += 1
            return env
        return gappy

    _wrap(m, "emit", make)


@defect("counter_decreases", "every other change of counters.processed_count serves one less than the value "
                             "before it: the counter goes down")
async def _counter_decreases(sim: Simulator, path: str = COUNTS[0]) -> None:
    flips = itertools.count()
    served: list[int] = []

    def make(publish: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        async def backwards(changes: dict[str, Any]) -> None:
            if path in changes:
                value = changes[path]
                if next(flips) % 2 and served:
                    value = max(0, served[-1] - 1)
                served[:] = [value]
                changes = {**changes, path: value}
            await publish(changes)
        return backwards

    _wrap(sim.binding, "publish", make)


@defect("future_timestamps", "every value is published with a SourceTimestamp an hour ahead of the clock", ("opcua",))
async def _future_timestamps(sim: Simulator, ahead_s: float = 3600.0) -> None:
    b: Any = sim.binding
    _wrap(b, "clock", lambda clock: lambda: clock() + timedelta(seconds=float(ahead_s)))
    await sim.publish_all()


@defect("slow_sampling", "process values (sample category) are served only every period_s wall seconds, slower than "
                         "their sampling_ms")
async def _slow_sampling(sim: Simulator, period_s: float = 1.5) -> None:
    paths = {p for p, v in sim.machine.variables.items() if v.category.value == "sample" and p != HEARTBEAT}
    held: dict[str, Any] = {}
    last = [time.monotonic()]

    def make(publish: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        async def slow(changes: dict[str, Any]) -> None:
            held.update((p, v) for p, v in changes.items() if p in paths)
            now = {p: v for p, v in changes.items() if p not in paths}
            if time.monotonic() - last[0] >= float(period_s):
                last[0] = time.monotonic()
                now.update(held)
                held.clear()
            await publish(now)
        return slow

    _wrap(sim.binding, "publish", make)


# --- commands --------------------------------------------------------------------------------------------

def _answer(sim: Simulator, wrong: Callable[[str, dict[str, Any]], str | None]) -> None:
    """Commands from a client answer `wrong(name, params)` when it gives a result name; nothing else happens then."""
    m = sim.machine

    def make(execute: Callable[..., int]) -> Callable[..., int]:
        def answer(name: str, params: dict[str, Any] | None = None, source: str = "remote") -> int:
            result = wrong(name, dict(params or {})) if source != LOCAL_PANEL else None
            return m.spec.result_codes[result] if result else execute(name, params, source)
        return answer

    _wrap(m, "execute", make)


@defect("accepts_bad_parameter", "a command with a parameter the spec does not allow answers ok (and does nothing)")
async def _accepts_bad_parameter(sim: Simulator) -> None:
    m = sim.machine
    _answer(sim, lambda name, params: "ok" if name in m.spec.commands and m._check_params(name, params) else None)


@defect("accepts_unknown_recipe", "SelectRecipe with an id the machine does not hold answers ok (and does nothing)")
async def _accepts_unknown_recipe(sim: Simulator) -> None:
    m = sim.machine
    _answer(sim, lambda name, params: "ok" if name == "SelectRecipe" and params.get("recipe_id") not in m.recipes
            else None)


@defect("unsupported_command_answers", "a command of a profile the machine does not claim answers as if it were "
                                       "supported (SelectRecipe: no_such_object or ok) instead of not_supported")
async def _unsupported_command_answers(sim: Simulator) -> None:
    m = sim.machine

    def supported(name: str, params: dict[str, Any]) -> str | None:
        if PROFILE_OF_COMMAND.get(name, "Core") in m.profiles:
            return None
        return "ok" if params.get("recipe_id") in m.recipes else "no_such_object"

    _answer(sim, supported)


# --- links -----------------------------------------------------------------------------------------------

class _NotedList(list):
    def __init__(self, items: Any, note: Callable[[], Any]):
        super().__init__(items)
        self.note = note

    def append(self, item: Any) -> None:
        super().append(item)
        self.note()


class _NotedDict(dict):
    def __init__(self, items: Any, note: Callable[[], Any]):
        super().__init__(items)
        self.note = note

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.note()


def _client_away(sim: Simulator) -> Callable[[], bool]:
    """A test for "a client that was connected is away now": fewer clients than the most seen at once."""
    server: Any = sim.binding.server
    peak = server.connections

    def away() -> bool:
        nonlocal peak
        clients = server.connections
        peak = max(peak, clients)
        return clients < peak

    _on_connect(sim, away)
    return away


def _on_connect(sim: Simulator, note: Callable[[], Any]) -> None:
    """Call `note` whenever a client connects: the servers' own connection registries, noted."""
    server: Any = sim.binding.server
    if sim.binding.protocol == "modbus":
        tcp = server._server
        tcp.active_connections = _NotedDict(tcp.active_connections, note)
    else:
        iserver = server.server.iserver
        iserver.asyncio_transports = _NotedList(iserver.asyncio_transports, note)


@defect("events_lost_offline", "events recorded while a client that was connected is away are lost from the ring "
                               "(their sequence numbers are used, the events are never served)")
async def _events_lost_offline(sim: Simulator) -> None:
    m = sim.machine
    away = _client_away(sim)
    lost: set[int] = set()

    def make_emit(emit: Callable[..., Any]) -> Callable[..., Any]:
        def forgetful(event_type: str, payload: dict[str, Any]) -> Any:
            env = emit(event_type, payload)
            if away():
                lost.add(env["seq"])
            return env
        return forgetful

    _wrap(m, "emit", make_emit)
    _wrap(m, "event", lambda event: lambda seq: None if seq in lost else event(seq))
    _wrap(m, "events_from", lambda events_from: lambda first, limit=100: [
        e for e in events_from(first, limit + len(lost)) if e["seq"] not in lost][:limit])


@defect("no_reconnect", "once a client's connection drops while another stays, the port stops listening: the "
                       "client that left cannot connect again", ("modbus",))
async def _no_reconnect(sim: Simulator) -> None:
    away = _client_away(sim)
    server: Any = sim.binding.server

    def make(tick: Callable[..., None]) -> Callable[..., None]:
        def closing(*args: Any, **kwargs: Any) -> None:
            if server.connections > 0 and away():
                sim.faults.refuse(True)
            tick(*args, **kwargs)
        return closing

    _wrap(sim.machine, "tick", make)


# --- spec 1.1 clauses ---------------------------------------------------------------------------------------

@defect("e10_not_derived", "state.e10_state serves SBY whatever the PackML state (the derivation table says PRD "
                           "in Execute)")
async def _e10_not_derived(sim: Simulator, member: str = "SBY") -> None:
    sim.faults.values.overrides["state.e10_state"] = sim.machine.spec.enum("e10_state")[member]
    await sim.publish()


@defect("units_counted_twice", "every unit made adds 2 to its counter (the UnitProcessed events say 1)")
async def _units_counted_twice(sim: Simulator) -> None:
    m = sim.machine

    def make(made: Callable[..., None]) -> Callable[..., None]:
        def twice(unit_id: str, good: bool, *args: Any, **kwargs: Any) -> None:
            made(unit_id, good, *args, **kwargs)
            path = COUNTS[1] if good else COUNTS[2]
            m.set(path, m.values[path] + 1)
        return twice

    _wrap(m, "unit_processed", make)


@defect("health_not_derived", "health.device_health serves CHECK_FUNCTION whatever the alarms and the mode (in "
                              "Processing the rule never gives it)")
async def _health_not_derived(sim: Simulator, member: str = "CHECK_FUNCTION") -> None:
    sim.faults.values.overrides["health.device_health"] = sim.machine.spec.enum("device_health")[member]
    await sim.publish()


@defect("recipe_hash_1_0_text", "recipe hashes over 1.0's Python-style JSON (75.0, not RFC 8785's 75) on a machine "
                                "that declares 1.1", bindings=("opcua",))
async def _recipe_hash_1_0_text(sim: Simulator) -> None:
    from interface_spec.recipes import recipe_hash
    from simulators.machine import Recipe

    m = sim.machine
    for rid, r in list(m.recipes.items()):
        m.recipes[rid] = Recipe(r.id, r.version, r.parameters,
                                recipe_hash(m.cls, r.id, r.version, r.parameters, rule="1.0"))
    if m.active_recipe is not None:
        m.activate_recipe(m.active_recipe.id)
    await sim.publish()


@defect("mailbox_without_check", "the events mailbox leaves events.seq_check at 0 (a 1.0 mailbox on a machine that "
                                 "declares 1.1)", bindings=("modbus",))
async def _mailbox_without_check(sim: Simulator) -> None:
    def make(put: Callable[..., None]) -> Callable[..., None]:
        def without_check(name: str, value: Any) -> None:
            put(name, 0 if name == "events.seq_check" else value)
        return without_check

    _wrap(sim.binding, "_put_area", make)


@defect("zeros_outside_map", "registers outside the map read 0 instead of answering exception 2",
        bindings=("modbus",))
async def _zeros_outside_map(sim: Simulator) -> None:
    sim.binding.server.served = {}


def catalogue() -> list[tuple[str, str, str]]:
    """(name, bindings, what it breaks), for documentation and listings."""
    return [(d.name, "/".join(d.bindings), d.doc) for d in DEFECTS.values()]


__all__ = ["DEFECTS", "apply_defect", "catalogue", "parse_defects"]
