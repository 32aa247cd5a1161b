"""Behaviour seen without commanding: what the machine serves must agree with the events it recorded.

Both checks read the served values fresh and then the events that arrived
since the history was read, in seq order (`probe.in_seq_order`), so a change
during the check is not mistaken for an inconsistency; the state check reads
the served states again after the events and starts over while they move.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway.conformance.checks import FAIL, NOT_APPLICABLE, WARNING, Outcome, check, ev, unobserved, verdict
from gateway.conformance.context import Context
from gateway.conformance.probe import in_seq_order

STATE_VARIABLES = ("item_state", "operation_mode", "control_authority", "e10_state", "packml_state")


async def _fresh_events(ctx: Context) -> list[dict[str, Any]]:
    """The history plus whatever arrived since it was read, in seq order (the probe's rule for events)."""
    last = max((e["seq"] for e in ctx.events if isinstance(e.get("seq"), int)), default=0)
    events, _ = in_seq_order(list(ctx.events) + await ctx.probe.events_since(last + 1))
    return events


@check("CORE-EVENT-004")
async def state_events(ctx: Context) -> Outcome:
    if ctx.events_error:
        return Outcome(FAIL, ctx.events_error)
    probe: Any = ctx.probe

    async def states() -> tuple[dict[str, Any], dict[str, Any]]:
        served = {v: await probe.state(v) for v in STATE_VARIABLES}
        previous = {}
        for v in STATE_VARIABLES:
            code = await probe.read_value(f"state.previous_{v}")
            previous[v] = ctx.spec.enum_name(ctx.spec.variable(ctx.cls, f"state.{v}").var.enum or "", code) \
                if isinstance(code, int) else None
        return served, previous

    # The served states and the events are read one after the other: a change in between would look like a
    # change without its event. They count as one picture when the states read the same before and after.
    served, previous = await states()
    for _ in range(3):
        events = await _fresh_events(ctx)
        again = await states()
        if again == (served, previous):
            break
        served, previous = again
    complete = bool(events) and events[0].get("seq") == 1  # the ring still holds everything since power-on
    problems, evidence = [], []
    for v in STATE_VARIABLES:
        chain = [e for e in events if e.get("type") == "StateChanged" and (e.get("payload") or {}).get("variable") == v]
        evidence.append(ev("observe", f"StateChanged {v}", value=[(e.get("seq"), e["payload"].get("previous"),
                                                                   e["payload"].get("current")) for e in chain][-6:],
                           note=f"served {served[v]}, previous {previous[v]}"))
        for a, b in zip(chain, chain[1:]):
            if b["payload"].get("previous") != a["payload"].get("current"):
                problems.append(f"{v}: event {b.get('seq')} says previous {b['payload'].get('previous')}, but event "
                                f"{a.get('seq')} ended in {a['payload'].get('current')}: a transition without its event")
        if chain:
            newest = chain[-1]["payload"]
            if served[v] is not None and newest.get("current") != served[v]:
                problems.append(f"state.{v} is {served[v]}, but the newest StateChanged (event {chain[-1].get('seq')}) "
                                f"says {newest.get('current')}: the change to {served[v]} has no event")
            elif previous[v] is not None and newest.get("previous") != previous[v]:
                problems.append(f"state.previous_{v} is {previous[v]}, but the newest StateChanged says previous "
                                f"{newest.get('previous')}")
        elif complete and served[v] is not None and previous[v] is not None and served[v] != previous[v]:
            problems.append(f"state.{v} changed from {previous[v]} to {served[v]} and no StateChanged event says so")
    return verdict(problems, evidence, "every state change in the history has its StateChanged event, chained, "
                                       "ending in the served state", "inconsistency")


@check("CORE-ALARM-003")
async def alarm_events(ctx: Context) -> Outcome:
    if ctx.events_error:
        return Outcome(FAIL, ctx.events_error)
    probe: Any = ctx.probe
    await probe.refresh_alarms()
    codes, raw = probe.alarm_codes()
    if codes is None:
        return Outcome(FAIL, f"the active alarm set cannot be read: {raw}")
    events = await _fresh_events(ctx)
    complete = bool(events) and events[0].get("seq") == 1
    newest: dict[int, dict[str, Any]] = {}
    for e in events:
        if e.get("type") in ("AlarmRaised", "AlarmCleared"):
            code = (e.get("payload") or {}).get("alarm_code")
            if isinstance(code, int):
                newest[code] = e
    problems = []
    evidence = [ev("read", "active alarms", value=sorted(codes), note=raw),
                ev("observe", "newest alarm events", value={c: (e["type"], e.get("seq")) for c, e in newest.items()})]
    for code, e in sorted(newest.items()):
        if e["type"] == "AlarmCleared" and code in codes:
            problems.append(f"alarm {code} was cleared (event {e.get('seq')}) but is still active: an alarm that "
                            f"never clears")
        elif e["type"] == "AlarmRaised" and code not in codes:
            problems.append(f"alarm {code} was raised (event {e.get('seq')}) and never cleared, but is not active")
    for code in codes:
        if code > 0 and code not in newest and complete:
            problems.append(f"alarm {code} is active without an AlarmRaised event")
    if not codes and not newest:
        return unobserved("no alarm was active and no alarm event was recorded", "raise and clear an alarm on the "
                          "machine during the observation", evidence)
    return verdict(problems, evidence, f"{len(codes)} active alarms agree with {len(newest)} alarm histories",
                   "inconsistency")


@check("CORE-STATE-003")
async def derived_states(ctx: Context) -> Outcome:
    probe: Any = ctx.probe
    mapped = set(probe.paths())
    names = [n for n in ("packml_state", "operation_mode", "item_state", "e10_state", "unit_mode")
             if f"state.{n}" in mapped]
    if not {"packml_state", "operation_mode"} <= set(names):
        why = "packml_state and operation_mode are needed to derive the others, and are not served"
        # Through a mapping, what a machine lacks is declared and reported by the presence cases.
        return Outcome(FAIL if ctx.mode == "native" else NOT_APPLICABLE, why)
    # One picture: the states read the same twice in a row (a change between two reads is not a mismatch).
    picture: dict[str, Any] = {}
    for _ in range(5):
        first = {n: await probe.state(n) for n in names}
        again = {n: await probe.state(n) for n in names}
        if first == again:
            picture = first
            break
    evidence = [ev("read", "state.*", value=picture)]
    if not picture:
        return Outcome(WARNING, "the states kept changing across five pairs of reads: no still picture to judge",
                       evidence)
    packml, mode = picture["packml_state"], picture["operation_mode"]
    if packml not in ctx.spec.core.state_derivation.packml:
        return Outcome(FAIL, f"packml_state {packml!r} is not a PackML state", evidence)
    item, e10s = ctx.spec.derived_states(packml, mode)
    problems = []
    if "item_state" in picture and picture["item_state"] != item:
        problems.append(f"item_state is {picture['item_state']} in {packml}/{mode}; the derivation table gives {item}")
    if "e10_state" in picture and picture["e10_state"] not in e10s:
        problems.append(f"e10_state is {picture['e10_state']} in {packml}/{mode}; the derivation table gives "
                        f"{' or '.join(sorted(e10s))}")
    unit_mode = ctx.spec.unit_mode_of(mode)
    if "unit_mode" in picture and unit_mode is not None and picture["unit_mode"] != unit_mode:
        problems.append(f"unit_mode is {picture['unit_mode']} in operation mode {mode}; it implies {unit_mode}")
    evidence.append(ev("compute", "state_derivation", value={"item_state": item, "e10_state": sorted(e10s),
                                                              "unit_mode": unit_mode}))
    return verdict(problems, evidence, f"{packml} in {mode}: item_state {item}, e10_state {picture.get('e10_state')} "
                                       f"as the derivation table gives", "inconsistency")


@check("CORE-HEALTH-003")
async def health_from_alarms(ctx: Context) -> Outcome:
    probe: Any = ctx.probe
    if "health.device_health" not in probe.paths():
        return Outcome(FAIL if ctx.mode == "native" else NOT_APPLICABLE, "health.device_health is not served")
    by_code = {a.code: a for a in ctx.spec.alarms(ctx.cls)}
    with_mode = "state.operation_mode" in probe.paths()

    async def look() -> tuple[Any, ...]:
        if ctx.mode == "native":  # through the gateway the alarm set is the gateway's latest
            await probe.refresh_alarms()
        return (await probe.state("operation_mode") if with_mode else None, probe.alarm_codes()[0],
                await _health(ctx))

    picture: tuple[Any, ...] = ()
    for _ in range(5):  # health, mode and alarms still across two reads: one picture
        first = await look()
        again = await look()
        if first == again:
            picture = first
            break
    if not picture:
        return Outcome(WARNING, "health, mode and alarms kept changing across five pairs of reads: no still picture")
    mode, codes, health = picture
    evidence = [ev("read", "operation_mode, active alarms, device_health", value=[mode, codes, health])]
    if codes is None:
        return Outcome(FAIL, "the active alarm set cannot be read", evidence)
    want = ctx.spec.device_health([by_code[c] for c in codes if c in by_code], mode or "")
    problems = [] if health == want else [f"device_health is {health} with alarms {sorted(codes)} in {mode}; the rule "
                                          f"health.from-alarms gives {want}"]
    return verdict(problems, evidence, f"device_health {health} with alarms {sorted(codes)} in {mode}", "inconsistency")


async def _health(ctx: Context) -> str | None:
    code = await ctx.probe.read_value("health.device_health")
    return ctx.spec.enum_name("device_health", code) if isinstance(code, int) else None


COUNTS = ("counters.good_count", "counters.defective_count")


async def _totals(ctx: Context) -> tuple[int, dict[str, Any]] | None:
    """(newest seq, the unit counters) read as one picture: the seq the same before and after the counters."""
    probe: Any = ctx.probe
    for _ in range(5):
        before = await probe.last_seq()
        got = await probe.read_samples(list(COUNTS))
        after = await probe.last_seq()
        values = {p: got[p].value for p in COUNTS if p in got}
        if before == after and isinstance(before, int) and all(isinstance(v, int) for v in values.values()) \
                and len(values) == len(COUNTS):
            return before, values
    return None


@check("TRACE-UNIT-002")
async def counters_total_units(ctx: Context) -> Outcome:
    probe: Any = ctx.probe
    if not set(COUNTS) <= set(probe.paths()):
        return Outcome(NOT_APPLICABLE, "good_count and defective_count are not both served")
    first = await _totals(ctx)
    if first is None:
        return Outcome(WARNING, "the counters and the newest seq never read still together: no picture to judge")
    seq0, counts0 = first
    deadline = time.monotonic() + ctx.options.unit_wait_s
    made: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not made:
        await asyncio.sleep(0.5)
        made = [e for e in await probe.events_since(seq0 + 1) if e.get("type") == "UnitProcessed"]
    second = await _totals(ctx)
    evidence = [ev("read", "newest seq, counters", value=[seq0, counts0])]
    if second is None or not made:
        return unobserved(f"no unit was made within {ctx.options.unit_wait_s:g} s" if not made else
                          "the counters never read still again", "let the machine produce during the check", evidence)
    seq1, counts1 = second
    events = [e for e in await probe.events_since(seq0 + 1) if isinstance(e.get("seq"), int) and e["seq"] <= seq1]
    evidence.append(ev("read", "newest seq, counters", value=[seq1, counts1]))
    if any(e.get("type") == "CountersReset" for e in events):
        return unobserved("the counters were reset between the two readings", "run the check again", evidence)
    units = [(e.get("payload") or {}).get("result") for e in events if e.get("type") == "UnitProcessed"]
    want = {"counters.good_count": units.count("good"), "counters.defective_count": units.count("reject")}
    grew = {p: counts1[p] - counts0[p] for p in COUNTS}
    evidence.append(ev("observe", f"UnitProcessed events {seq0 + 1}..{seq1}", value=want, note=f"counters grew {grew}"))
    problems = [f"{p} grew by {grew[p]} while {want[p]} UnitProcessed events with result "
                f"{'good' if p.endswith('good_count') else 'reject'} were reported (events {seq0 + 1}..{seq1})"
                for p in COUNTS if grew[p] != want[p]]
    return verdict(problems, evidence, f"{len(units)} units reported, the counters grew by as many", "inconsistency")
