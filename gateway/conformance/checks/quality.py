"""Data quality layer: values, counters, the heartbeat, encodings, events and timestamps as observed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import statistics
import time
from typing import Any

from gateway.conformance.checks import (
    ERROR,
    FAIL,
    NOT_APPLICABLE,
    NOT_IMPLEMENTED,
    PASS,
    WARNING,
    Outcome,
    check,
    ev,
    graded,
    is_required,
    missing_reason,
    plural,
    served_paths,
    sub_unit_of,
    unobserved,
    verdict,
)
from gateway.conformance.context import Context
from gateway.conformance.probe import advance, in_seq_order
from gateway.samples import Quality, Sample
from interface_spec.recipes import canonical_text, hash_rule, recipe_document

FLOAT32_MIN_NORMAL = 1.1754943508222875e-38
TYPE_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "string_list": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "object": lambda v: isinstance(v, dict),
    "enum": lambda v: isinstance(v, str),
}
ENVELOPE = {"type", "equipment", "source_ts", "seq", "payload"}
# What an order check says when the machine's clock went back past the tolerance: it cannot judge, it does not fail.
CLOCK_DOUBT = "order not judged (the machine's clock and the kit's disagree)"
# Why the gateway marks a value bad because of the value itself (read errors belong to presence).
VALUE_REASONS = ("nan", "infinite", "wrong_type", "unknown_enum_code")


def changes(samples: list[Sample]) -> list[tuple[float, Any]]:
    """(first seen, value) of each new good value, in order."""
    return [(s.gateway_ts, s.value) for s in changed(samples)]


def changed(samples: list[Sample]) -> list[Sample]:
    """The sample of each new good value, in order (the probe's history is in source-time order)."""
    out: list[Sample] = []
    for s in samples:
        if s.quality == Quality.BAD or s.value is None:
            continue
        if not out or s.value != out[-1].value:
            out.append(s)
    return out


def window(ctx: Context, path: str) -> list[Sample]:
    """Samples of the observation window, starting with the value that held at its start
    (a subscription reports a value only when it changes)."""
    history = ctx.probe.history.get(path, [])
    before = [s for s in history if s.gateway_ts < ctx.t0][-1:]
    return before + [s for s in history if ctx.t0 <= s.gateway_ts <= ctx.t1]


def top_of(ctx: Context, path: str) -> int:
    """The largest value a counter can hold before it wraps to zero (its range, or its bits)."""
    var = ctx.spec.variable(ctx.cls, path).var
    if var.range:
        return int(var.range[1])
    result: int = 2 ** (var.bits or 32) - 1
    return result


def step(a: int, b: int) -> int:
    """How far a 32-bit counter moved from a to b; a step back counts as none (the checks that judge order
    report it, with `advance`)."""
    return advance(a, b, 0xFFFFFFFF) or 0


def late_evidence(ctx: Context, path: str, t0: float = 0.0) -> list[dict[str, Any]]:
    """What the probe kept aside for a path (see Probe.take): answers older than a value already recorded, and
    values sharing a source timestamp with another; shown so that a vendor sees why they were not judged."""
    o = ctx.probe.order.get(path)
    if o is None:
        return []
    out = []
    late = [(s, n) for s, n in o.late if s.gateway_ts >= t0 and s.value != n.value]
    if late:
        out.append(ev("observe", f"{path}: answers older than a value already recorded",
                      value=[{"value": s.value, "source_ts": round(s.source_ts, 3), "newer": n.value,
                              "newer_source_ts": round(n.source_ts, 3)} for s, n in late[:10]],
                      note=f"{plural(len(late), 'observation')} kept as evidence, not taken as the newer value "
                           f"(fresh reads and notifications arrive by two paths)"))
    ties = [(s, n) for s, n in o.ties if s.gateway_ts >= t0]
    if ties:
        out.append(ev("observe", f"{path}: different values with the same source timestamp",
                      value=[{"source_ts": round(s.source_ts, 3), "values": [n.value, s.value]} for s, n in ties[:10]],
                      note="their order cannot be known; the first one seen was kept"))
    return out


def went_back(ctx: Context, path: str, seen: list[Sample], top: int
              ) -> tuple[int, list[tuple[Sample, Sample]], list[str]]:
    """Over the changes of one counter in source-time order: (how far it moved, the steps back, where it went
    back as the machine's clock went back). A step back is a wrap only near the top and near zero (`advance`);
    one taken at a clock step cannot be ordered, so it is reported as the clock's, not as the counter's."""
    o = ctx.probe.order.get(path)
    clock = {id(s) for s, _ in o.clock_back} if o else set()
    moved = 0
    back: list[tuple[Sample, Sample]] = []
    clocked: list[str] = []
    for a, b in zip(seen, seen[1:]):
        d = advance(a.value, b.value, top)
        if d is not None:
            moved += d
        elif id(b) in clock:
            clocked.append(f"{path} read {b.value} after {a.value} as the machine's clock went back "
                           f"{a.source_ts - b.source_ts:.1f} s (more than the {ctx.options.clock_tolerance_s:g} s "
                           f"tolerance): the order of the two cannot be judged")
        else:
            back.append((a, b))
    return moved, back, clocked


# --- values per sub-unit ------------------------------------------------------------------------------------

@check(select=lambda c: bool(c.sub_unit) and c.id.endswith("-002"))
async def sub_unit_values(ctx: Context) -> dict[str, Outcome]:
    cases = [c for c in ctx.catalogue.cases.values() if c.sub_unit and c.id.endswith("-002")]
    return {c.id: _values(ctx, c) for c in cases}


def _values(ctx: Context, case: Any) -> Outcome:
    su = sub_unit_of(case, ctx)
    problems, evidence, seen = [], [], 0
    paths = [(p, d) for p, d in served_paths(ctx, su.id) if ctx.mode == "integration" or is_required(ctx, d)]
    if not paths:
        if ctx.mode == "integration":
            return Outcome(NOT_APPLICABLE, f"no variable of {su.id} is mapped (see {case.unit}-001)")
        return Outcome(NOT_IMPLEMENTED, f"no variable of {su.id} is served or declared", mandatory=False)
    for path, d in paths:
        if missing_reason(ctx, path) is not None:
            continue  # the presence case reports it
        var, bad = d.var, None
        for s in ctx.probe.history.get(path, []):
            seen += 1
            if s.quality == Quality.BAD and (s.reason in VALUE_REASONS or s.reason.startswith("unknown_vendor_code")):
                enum = f" ({var.enum})" if var.enum else ""
                bad = (s, f"{path} = {s.value!r}: {s.reason}{enum}")
            elif s.reason == "out_of_range":
                bad = (s, f"{path} = {s.value:g} {var.unit} is outside its range {var.range[0]:g}..{var.range[1]:g}")
            elif var.type == "string" and isinstance(s.value, str) and len(s.value) > (var.length or 0):
                bad = (s, f"{path} is {len(s.value)} characters, at most {var.length}")
            if bad:
                break
        if bad:
            problems.append(bad[1])
            expected = (f"{var.range[0]:g}..{var.range[1]:g} {var.unit}" if var.range else
                        f"member of {var.enum}" if var.enum else var.type)
            evidence.append(ev("read", path, value=bad[0].value, expected=expected,
                               note=bad[0].reason or "", ))
    if not seen:
        return Outcome(FAIL, f"no value of {su.id} could be read")
    return verdict(problems, evidence, f"{seen} readings of {len(paths)} variables, all valid", "invalid value")


# --- identification, heartbeat, counters ---------------------------------------------------------------------

@check("CORE-IDENT-003")
async def identification(ctx: Context) -> Outcome:
    spec, probe = ctx.spec, ctx.probe
    problems, evidence = [], []
    for name in ("manufacturer", "model", "serial_number", "product_instance_uri", "software_revision",
                 "hardware_revision", "equipment_class", "spec_version", "supported_profiles"):
        value = probe.value(f"identification.{name}")
        evidence.append(ev("read", f"identification.{name}", value=value))
        if not isinstance(value, str) or not value.strip():
            problems.append(f"identification.{name} is empty")
    if probe.value("identification.equipment_class") not in (None, "", ctx.cls):
        problems.append(f"identification.equipment_class is {probe.value('identification.equipment_class')!r}, "
                        f"the machine is claimed as {ctx.cls}")
    version = probe.value("identification.spec_version")
    if isinstance(version, str) and version and version.split(".")[0] != spec.version.split(".")[0]:
        problems.append(f"identification.spec_version {version!r} is not a {spec.version.split('.')[0]}.x version")
    profiles = [p.strip() for p in str(probe.value("identification.supported_profiles") or "").split(",") if p.strip()]
    unknown = [p for p in profiles if p not in spec.profiles(ctx.cls)]
    if unknown:
        problems.append(f"supported_profiles names unknown profiles {unknown}")
    for need in ("Core", ctx.cls.capitalize()):
        if profiles and need not in profiles:
            problems.append(f"supported_profiles lacks {need}")
    return verdict(problems, evidence, f"identification complete; class {ctx.cls}, spec {version}, profiles {profiles}")


def _heartbeat(ctx: Context) -> tuple[list[Sample], float]:
    return changed(window(ctx, "status.heartbeat")), ctx.t1 - ctx.t0


@check("CORE-STATUS-003")
async def heartbeat(ctx: Context) -> Outcome:
    period, timeout = ctx.spec.core.heartbeat_period_s, ctx.spec.core.heartbeat_timeout_s
    path = "status.heartbeat"
    seen, elapsed = _heartbeat(ctx)
    evidence = [ev("observe", path, value=[s.value for s in seen][:20],
                   note=f"{len(seen)} distinct values in {elapsed:.1f} s, in source-time order")]
    evidence += late_evidence(ctx, path, ctx.t0)
    if not seen:
        return Outcome(FAIL, "status.heartbeat could not be read during the observation", evidence)
    moved, back, clocked = went_back(ctx, path, seen, top_of(ctx, path))
    expected = elapsed / period
    times = [ctx.t0] + [s.gateway_ts for s in seen[1:]] + [ctx.t1]
    still = max(b - a for a, b in zip(times, times[1:]))
    evidence.append(ev("compare", "increments", value=moved, expected=f"about {expected:.1f} (one per {period:g} s)"))
    problems = [f"status.heartbeat went back from {a.value} to {b.value} (source times {a.source_ts:.3f} then "
                f"{b.source_ts:.3f}; a wrap is near the top and near zero)" for a, b in back]
    if still >= timeout:
        problems.append(f"status.heartbeat stood still for {still:.1f} s (a gateway declares the machine unavailable "
                        f"after {timeout:g} s)")
    if expected >= 2 and not clocked and not 0.5 * expected <= moved <= 1.5 * expected:
        problems.append(f"status.heartbeat advanced by {moved} in {elapsed:.1f} s, expected about {expected:.0f} "
                        f"(one per {period:g} s)")
    return graded(problems, clocked, evidence, f"advanced by {moved} in {elapsed:.1f} s; longest still {still:.1f} s",
                  "problem", CLOCK_DOUBT)


@check("CORE-COUNTERS-003")
async def counters(ctx: Context) -> Outcome:
    probe = ctx.probe
    tol = ctx.options.clock_tolerance_s
    units = ["counters.processed_count", "counters.good_count", "counters.defective_count"]
    mapped = set(probe.paths())
    times = [p for p in mapped if p.startswith("counters.time_")]
    resets = [e for e in ctx.events if e.get("type") == "CountersReset" and isinstance(e.get("source_ts"), (int, float))]
    problems, evidence, unjudged = [], [], []
    for path in [p for p in units if p in mapped] + sorted(times):
        seen = changed(probe.history.get(path, []))
        _, back, clocked = went_back(ctx, path, seen, top_of(ctx, path))
        unjudged += clocked
        if clocked:
            evidence += late_evidence(ctx, path)
        for a, b in back:
            # A CountersReset explains a fall of the unit counters. The reading's source time is the machine's
            # clock (OPC UA) or the kit's (Modbus); the event's is the machine's.
            explained = path in units and any(e["source_ts"] <= b.source_ts + tol for e in resets)
            if explained:
                continue
            evidence.append(ev("observe", path, value=[a.value, b.value], expected="never decreasing",
                               note=f"source times {a.source_ts:.3f} then {b.source_ts:.3f}"))
            evidence += late_evidence(ctx, path)
            if path in units and resets:
                unjudged.append(f"{path} went down from {a.value} to {b.value} at {b.source_ts:.3f}, and CountersReset "
                                f"(seq {resets[-1].get('seq')}) is stamped {resets[-1]['source_ts'] - b.source_ts:.1f} "
                                f"s later: the machine's clock and the kit's disagree beyond the {tol:g} s tolerance")
            else:
                problems.append(f"{path} went down from {a.value} to {b.value}")
            break
    if all(p in mapped for p in units):
        snapshot: dict[str, Any] = {}
        for _ in range(3):  # a unit may be counted between two reads: three tries
            got = await probe.read_samples(units)
            snapshot = {p: got[p].value for p in units if p in got and isinstance(got[p].value, int)}
            if len(snapshot) == 3 and snapshot[units[0]] == snapshot[units[1]] + snapshot[units[2]]:
                break
            await asyncio.sleep(0.1)
        evidence.append(ev("read", "processed = good + defective", value=snapshot))
        if len(snapshot) < 3:
            problems.append(f"the unit counters could not all be read together (read {snapshot})")
        elif snapshot[units[0]] != snapshot[units[1]] + snapshot[units[2]]:
            problems.append(f"processed_count {snapshot[units[0]]} != good_count {snapshot[units[1]]} + "
                            f"defective_count {snapshot[units[2]]}")
    return graded(problems, unjudged, evidence, "counters never went down; processed = good + defective", "problem",
                  CLOCK_DOUBT)


# --- binding encodings and alarms -------------------------------------------------------------------------

@check("CORE-MODBUS-002")
async def word_order(ctx: Context) -> Outcome:
    probe: Any = ctx.probe
    problems, evidence = [], []
    seen, _ = _heartbeat(ctx)
    steps = [step(a.value, b.value) for a, b in zip(seen, seen[1:])]
    evidence.append(ev("observe", "status.heartbeat (uint32, ABCD)", value=[s.value for s in seen][:10],
                       note=f"steps {steps[:10]}"))
    if steps and all(s >= 0x10000 and s % 0x10000 == 0 for s in steps):
        problems.append(f"status.heartbeat moves in steps of {steps[0]} (multiples of 65536): the low word comes "
                        f"first (CDAB), the spec's order is ABCD")
    floats = [p.key for p in probe.plan.points if p.options.get("dtype") == "float32" and p.key in probe.history]
    for path in floats:
        odd = [s.value for s in probe.history[path] if isinstance(s.value, float) and 0 < abs(s.value) < FLOAT32_MIN_NORMAL]
        if odd:
            problems.append(f"{path} reads {odd[-1]:.3g}, a subnormal float32: swapped words, or an integer in a "
                            f"float register")
            evidence.append(ev("read", path, value=odd[-1], expected="a normal float32 (ABCD)"))
    return verdict(problems, evidence, f"heartbeat steps of one; {len(floats)} float32 values, none subnormal",
                   "encoding problem")


@check("CORE-ALARM-002")
async def alarm_codes(ctx: Context) -> Outcome:
    codes, raw = ctx.probe.alarm_codes()
    if codes is None:
        return Outcome(FAIL, f"the active alarm set cannot be read: {raw}")
    known = {a.code for a in ctx.spec.alarms(ctx.cls)}
    problems = [f"bit {-c - 1} is set, beyond the {len(known)} alarms of the catalogue" if c < 0 else
                f"code {c} is not an alarm of {ctx.cls}" for c in codes if c not in known]
    evidence = [ev("read", "active alarms", value=codes, note=raw)]
    raised = [e for e in ctx.events if e.get("type") == "AlarmRaised"]
    if not codes and not raised:
        return unobserved("no alarm was active and none was raised, so the alarm layout (bits or codes) was never "
                          "seen in use", "raise an alarm on the machine during the observation (e.g. open a door)",
                          evidence)
    if not codes:  # raised and cleared before the read: the events say which codes the machine uses
        problems += [f"AlarmRaised (event {e.get('seq')}) carries code {code}, not an alarm of {ctx.cls}"
                     for e in raised if (code := (e.get("payload") or {}).get("alarm_code")) not in known]
    return verdict(problems, evidence,
                   f"{len(codes)} active alarms, all from the {ctx.cls} catalogue")


# --- events ------------------------------------------------------------------------------------------------

def _events_or_error(ctx: Context) -> Outcome | None:
    if ctx.events_error:
        return Outcome(FAIL, ctx.events_error)
    if not ctx.events:
        return Outcome(FAIL, "no event could be read (the machine emits events from power-on: state changes, recipes)")
    return None


@check("CORE-EVENT-002")
async def event_order(ctx: Context) -> Outcome:
    bad = _events_or_error(ctx)
    if bad:
        return bad
    probe: Any = ctx.probe
    # The same event read twice (a batch re-read, a late answer) counts once; what is left must be served in
    # seq order, consecutive. Two different envelopes with one seq are the machine's.
    events, conflicts = in_seq_order(ctx.events)
    served: list[Any] = []
    for e in ctx.events:
        if not any(e is x or e == x for x in served):
            served.append(e)
    seqs = [e.get("seq") for e in events]
    problems, evidence = [], [ev("read", "events", value=f"seq {seqs[0]}..{seqs[-1]}", note=f"{len(events)} events")]
    for a, b in zip(seqs, seqs[1:]):
        if not (isinstance(a, int) and isinstance(b, int)) or b != a + 1:
            problems.append(f"seq {b} follows seq {a}" + (" (a gap)" if isinstance(a, int) and isinstance(b, int)
                                                          and b > a + 1 else ""))
    if served != events and not conflicts:
        order = [e.get("seq") for e in served]
        problems.append(f"events were served out of seq order ({order[:20]})")
    for a, b in conflicts:
        problems.append(f"seq {a.get('seq')} was served as two different events")
        evidence.append(ev("read", f"event {a.get('seq')} twice", value=[a, b]))
    last = await probe.last_seq()
    if isinstance(last, int) and isinstance(seqs[-1], int) and seqs[-1] > last:
        problems.append(f"an event has seq {seqs[-1]}, beyond the newest seq served ({last})")
    if isinstance(last, int) and last > 0:
        # The newest seq and the oldest event are two reads: a producing machine may push the oldest out of
        # its ring in between. Short only when the newest did not move meanwhile; else ask again from there.
        for _ in range(3):
            oldest = max(1, last - 999)
            got = await probe.events_from(oldest, 1)
            if got and got[0].get("seq") == oldest:
                break
            again = await probe.last_seq()
            if not isinstance(again, int) or again <= last:
                break
            last = again
        evidence.append(ev("read", f"event {oldest} (oldest the ring must hold)", value=got[:1]))
        if not got or got[0].get("seq") != oldest:
            problems.append(f"event {oldest} (newest {last} - 999) is no longer served: the ring holds fewer than 1000")
    middle = events[len(events) // 2]
    if isinstance(middle.get("seq"), int):
        again = await probe.events_from(middle["seq"], 1)
        if not again or again[0] != middle:
            problems.append(f"reading event {middle['seq']} twice gave different envelopes")
            evidence.append(ev("read", f"event {middle['seq']} again", value=again[:1], expected=middle))
    return verdict(problems, evidence, f"{len(events)} events, seq {seqs[0]}..{seqs[-1]} consecutive; the ring holds "
                                       f"what it must")


def envelope_problems(ctx: Context, env: dict[str, Any], now: float) -> list[str]:
    spec = ctx.spec
    allowed = {e.id for e in spec.core.events if e.id not in {x for c in spec.classes.values() for x in c.events}}
    allowed |= set(spec.get_class(ctx.cls).events)
    seq = env.get("seq")
    where = f"event {seq} ({env.get('type')})"
    if "invalid_envelope" in env or "invalid_payload" in (env.get("payload") or {}):
        return [f"{where}: not JSON: {env.get('invalid_envelope') or env['payload']['invalid_payload']!r}"]
    out = []
    extra = set(env) - ENVELOPE
    if extra and ctx.probe.protocol == "opcua":
        out.append(f"{where}: envelope fields {sorted(extra)} are not in the spec")
    etype = spec.events.get(str(env.get("type")))
    if etype is None:
        return out + [f"{where}: '{env.get('type')}' is not a spec event type"]
    if etype.id not in allowed:
        out.append(f"{where}: a {ctx.cls} does not emit {etype.id}")
    ts = env.get("source_ts")
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        out.append(f"{where}: source_ts {ts!r} is not a number")
    elif ts > now + ctx.options.clock_tolerance_s:
        out.append(f"{where}: source_ts is {ts - now:.1f} s in the future")
    payload = env.get("payload")
    if not isinstance(payload, dict):
        return out + [f"{where}: payload is not an object"]
    fields = {f.name: f for f in etype.payload}
    for name, f in fields.items():
        if name not in payload:
            if f.required:
                out.append(f"{where}: payload lacks '{name}'")
        elif not TYPE_CHECKS[f.type](payload[name]):
            out.append(f"{where}: payload '{name}' = {payload[name]!r} is not of type {f.type}")
    for name in set(payload) - set(fields):
        out.append(f"{where}: payload field '{name}' is not in the spec")
    return out


@check("CORE-EVENT-003")
async def event_envelopes(ctx: Context) -> Outcome:
    bad = _events_or_error(ctx)
    if bad:
        return bad
    now = time.time()
    tol = ctx.options.clock_tolerance_s
    problems: list[str] = []
    clock: list[str] = []
    evidence = []
    last_ts = None
    events, conflicts = in_seq_order(ctx.events)
    for a, b in conflicts:
        problems.append(f"event {a.get('seq')} was read twice with different envelopes")
        evidence.append(ev("read", f"event {a.get('seq')} twice", value=[a, b]))
    for env in events:
        found = envelope_problems(ctx, env, now)
        ts = env.get("source_ts")
        if isinstance(ts, (int, float)) and last_ts is not None and ts < last_ts - 0.001:
            # seq is the order; a source_ts back by more than the clock tolerance is the clock going back.
            (clock if last_ts - ts > tol else found).append(
                f"event {env.get('seq')}: source_ts goes back {last_ts - ts:.3f} s from the event before"
                + (f" (more than the {tol:g} s clock tolerance: the machine's clock went back)"
                   if last_ts - ts > tol else ""))
        stepped = len(clock)
        if isinstance(ts, (int, float)):
            last_ts = ts
        if found or len(clock) > stepped:
            problems += found
            evidence.append(ev("read", f"event {env.get('seq')}", value=env))
    kinds = sorted({str(e.get("type")) for e in events})
    return graded(problems, clock, evidence, f"{len(events)} envelopes valid ({', '.join(kinds)})", "invalid event",
                  "clock step (order judged by seq, not by source_ts)")


# --- recipe, traceability ------------------------------------------------------------------------------------

def recipe_hash(ctx: Context, recipe_id: str, version: Any, parameters: Any) -> tuple[str, str]:
    """(hash, the canonical text hashed) by the rule of the spec version the machine declares: RFC 8785 from 1.1,
    1.0's Python-style JSON for a machine that declares 1.0. The machine's own values are hashed as given: a wrong
    type is a wrong hash."""
    rule = hash_rule(str(ctx.probe.value("identification.spec_version") or ""))
    doc = recipe_document(ctx.cls, recipe_id, version, parameters)
    try:
        text = canonical_text(doc, rule)
    except (TypeError, ValueError) as exc:  # e.g. NaN, which RFC 8785 cannot write
        return f"(no canonical text: {exc})", ""
    return hashlib.sha256(text).hexdigest()[:16], text.decode("utf-8")


def hash_difference(computed: str, text: str, served: Any, document: dict[str, Any], version: Any) -> str:
    """What differs when a recipe's hash does not agree: the served hash, the document's, the version, or the
    parameters' canonical text."""
    parts = []
    if document.get("version") != version:
        parts.append(f"the document is version {document.get('version')}, the active version is {version}")
    if document.get("hash") != served:
        parts.append(f"the document carries hash {document.get('hash')}, the active hash is {served}")
    if computed != served:
        parts.append(f"its parameters hash to {computed} (canonical text {text}), not {served}: the machine hashed "
                     f"other parameters or another text")
    return "; ".join(parts)


@check("RECIPE-ACTIVE-003")
async def active_recipe_hash(ctx: Context) -> Outcome:
    probe: Any = ctx.probe
    rid, version, value = (probe.value(f"recipe.active_recipe_{k}") for k in ("id", "version", "hash"))
    evidence = [ev("read", "recipe.active_recipe_*", value={"id": rid, "version": version, "hash": value})]
    if not rid:
        return unobserved("no recipe is active (empty id), so no hash to recompute",
                          "select a recipe on the machine, or run with --allow-control (the RECIPE-SELECT and "
                          "RECIPE-TRANSFER cases check the hash of what they store)", evidence)
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{16}", value):
        return Outcome(FAIL, f"recipe.active_recipe_hash {value!r} is not 16 lower-case hex digits", evidence)
    if probe.protocol != "opcua":
        return Outcome(PASS, f"hash {value} is well-formed (Modbus has no recipe transfer to recompute it)", evidence)
    out = await probe.call("recipes.get", [rid])
    doc = json.loads(out[0]) if out and out[0] else None
    evidence.append(ev("call", f"Recipes/Get({rid!r})", value=doc))
    if not isinstance(doc, dict):
        return Outcome(FAIL, f"Recipes/Get({rid!r}) returns no recipe, though it is the active one", evidence)
    computed, text = recipe_hash(ctx, rid, doc.get("version"), doc.get("parameters"))
    evidence.append(ev("compute", "SHA-256 of the canonical text, first 16 hex digits", value=computed, expected=value,
                       note=text))
    if computed != value or doc.get("hash") != value or doc.get("version") != version:
        return Outcome(FAIL, f"the active recipe {rid}: {hash_difference(computed, text, value, doc, version)}",
                       evidence)
    return Outcome(PASS, f"recipe {rid} v{version}: hash {value} recomputed from its document", evidence)


async def units_made(ctx: Context) -> list[dict[str, Any]]:
    """UnitProcessed events seen; waits up to `unit_wait_s` for one when the observation saw none."""
    def found() -> list[dict[str, Any]]:
        return [e for e in ctx.events if e.get("type") == "UnitProcessed"]

    deadline = time.monotonic() + ctx.options.unit_wait_s
    while not found() and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        await ctx.read_events()
    return found()


@check("TRACE-UNIT-001")
async def unit_links(ctx: Context) -> Outcome:
    if ctx.events_error:
        return Outcome(FAIL, ctx.events_error)
    cls = ctx.spec.get_class(ctx.cls)
    units = await units_made(ctx)
    if not units:
        return Outcome(ERROR, f"no UnitProcessed event within {ctx.options.unit_wait_s:g} s after the observation: "
                              f"the machine must make {cls.processed_unit}s during the test")
    problems, gaps, evidence, ids = [], [], [], set()
    for e in units:
        p = e.get("payload") or {}
        where = f"UnitProcessed seq {e.get('seq')} ({p.get('unit_id')})"
        found, absent = [], []
        if p.get("unit_type") != cls.processed_unit:
            found.append(f"{where}: unit_type {p.get('unit_type')!r}, expected {cls.processed_unit!r}")
        if not isinstance(p.get("unit_id"), str) or not p.get("unit_id"):
            found.append(f"{where}: no unit_id")
        elif p["unit_id"] in ids:
            found.append(f"{where}: unit_id {p['unit_id']!r} was reported before")
        ids.add(p.get("unit_id"))
        if "result" not in p:
            absent.append(f"{where}: no result")
        elif p["result"] not in ("good", "reject"):
            found.append(f"{where}: result {p.get('result')!r} is not good or reject")
        made_from = p.get("made_from")
        if made_from in (None, []):
            absent.append(f"{where}: made_from {made_from!r} links the unit to no input")
        elif not isinstance(made_from, list) or not all(isinstance(x, str) and x for x in made_from):
            found.append(f"{where}: made_from {made_from!r} is not a list of input ids")
        m = p.get("measurements")
        if m is None:
            absent.append(f"{where}: no measurements")
        elif not isinstance(m, dict):
            found.append(f"{where}: measurements {m!r} is not an object")
        else:
            for name, value in m.items():
                if name not in cls.unit_processed:
                    found.append(f"{where}: measurement '{name}' is not one of {sorted(cls.unit_processed)}")
                elif isinstance(value, bool) or not isinstance(value, (int, float)):
                    found.append(f"{where}: measurement '{name}' = {value!r} is not a number")
        if ctx.mode == "native":  # a machine must send everything; through a mapping, what it lacks is a gap
            found, absent = found + absent, []
        if found or absent:
            problems += found
            gaps += absent
            evidence.append(ev("read", where, value=p, expected=f"made_from: input ids; measurements in "
                                                                 f"{cls.unit_processed}"))
    if problems or not gaps:
        return verdict(problems, evidence, f"{plural(len(units), 'unit')} made, each linked to its inputs",
                       "traceability problem")
    return verdict(gaps, evidence, "", "gap (a field the machine does not provide through its mapping)",
                   status=WARNING)


# --- data collection ---------------------------------------------------------------------------------------

def _sample_variables(ctx: Context) -> list[tuple[str, Any]]:
    cls_sub_units = {su.id for su in ctx.spec.get_class(ctx.cls).sub_units}
    out = []
    for path in ctx.probe.paths():
        d = ctx.spec.variable(ctx.cls, path)
        if d.sub_unit.id in cls_sub_units and d.var.category.value == "sample" and d.var.sampling_ms \
                and (ctx.mode == "integration" or is_required(ctx, d)):
            out.append((path, d))
    return out


@check("DC-SAMPLING-001")
async def values_live(ctx: Context) -> Outcome:
    states = {s.value for s in window(ctx, "state.packml_state") if s.quality != Quality.BAD}
    execute = ctx.spec.enum("packml_state")["Execute"]
    names = sorted(str(ctx.spec.enum_name("packml_state", v)) for v in states)
    if execute not in states:
        return Outcome(ERROR, f"the machine was not in Execute during the observation (packml_state {names}): "
                              f"run it producing for this check")
    variables = _sample_variables(ctx)
    live = [p for p, _ in variables if len(changes(window(ctx, p))) >= 2]
    evidence = [ev("observe", "sample values", value=f"{len(live)} of {len(variables)} changed",
                   note=f"{ctx.t1 - ctx.t0:.1f} s in {names}")]
    if variables and not live:
        frozen = [p for p, _ in variables][:8]
        return Outcome(FAIL, f"none of the {len(variables)} sample values changed in {ctx.t1 - ctx.t0:.1f} s while "
                             f"executing (values that never change), e.g. {', '.join(frozen)}",
                       evidence + [ev("observe", p, value=[v for _, v in changes(window(ctx, p))][:3],
                                      expected="changing while producing") for p in frozen])
    return Outcome(PASS, f"{len(live)} of {len(variables)} sample values changed while executing", evidence)


@check("DC-SAMPLING-002")
async def sampling_period(ctx: Context) -> Outcome:
    scan = ctx.options.scan_ms / 1000.0
    execute = ctx.spec.enum("packml_state")["Execute"]
    executing = all(s.value == execute for s in window(ctx, "state.packml_state") if s.quality != Quality.BAD)
    slow: list[str] = []
    clear: list[str] = []
    evidence: list[dict[str, Any]] = []
    measured = 0
    for path, d in _sample_variables(ctx):
        # Changes within the window only: the value held at its start may be from long before.
        seen = [t for t, _ in changes(window(ctx, path)) if t >= ctx.t0]
        if len(seen) < 3:
            continue
        measured += 1
        typical = statistics.median(b - a for a, b in zip(seen, seen[1:]))
        limit = 3 * d.var.sampling_ms / 1000.0 + scan
        if typical > limit:
            text = f"{path} changes every {typical:.2f} s (sampling {d.var.sampling_ms} ms)"
            (clear if executing and d.var.type == "float" else slow).append(text)
            evidence.append(ev("observe", path, value=round(typical, 3), expected=f"<= {limit:.2f} s",
                               note=f"{len(seen)} changes in {ctx.t1 - ctx.t0:.1f} s"))
    if not measured:
        return unobserved("no sample value changed three times in the window, so no period could be measured",
                          "observe longer (--observe) while the machine executes", evidence)
    return graded(clear, slow, evidence, f"{measured} changing values refresh within three times their sampling period",
                  "slow value (updated less often than its sampling period)",
                  "slow variable (an integer may stand still, or the machine was not executing)")


@check("DC-SAMPLING-003")
async def source_timestamps(ctx: Context) -> Outcome:
    tol = ctx.options.clock_tolerance_s
    publishing = ctx.options.scan_ms / 1000.0
    problems, evidence, ties, n = [], [], [], 0
    for path in ctx.probe.paths():
        o = ctx.probe.order.get(path)
        # The history is in source-time order (Probe.take); what arrived late is judged for its clock too.
        kept = [s for s in ctx.probe.history.get(path, []) if s.quality != Quality.BAD]
        late = [s for s, _ in o.late] if o else []
        n += len(kept) + len(late)
        found, at = None, None
        for s in kept + late:
            if s.source_ts > s.gateway_ts + tol:
                found, at = f"{path}: SourceTimestamp {s.source_ts - s.gateway_ts:.1f} s in the future", s
            elif s.source_ts < 946684800:
                found, at = f"{path}: SourceTimestamp {s.source_ts} is before the year 2000", s
            if found:
                break
        if not found and o and o.clock_back:
            s, newer = o.clock_back[0]
            found, at = f"{path}: SourceTimestamp went back {newer.source_ts - s.source_ts:.3f} s", s
        if not found:
            for a, b in zip(kept, kept[1:]):
                if b.value != a.value and b.gateway_ts - b.source_ts > tol + publishing:
                    found, at = (f"{path}: a new value arrived with a SourceTimestamp "
                                 f"{b.gateway_ts - b.source_ts:.1f} s old"), b
                    break
        if found and at is not None:
            problems.append(found)
            evidence.append(ev("read", path, value=at.source_ts, expected=f"within {tol:g} s of {at.gateway_ts:.3f}"))
        elif o and o.ties:
            s, first = o.ties[0]
            ties.append(f"{path}: {first.value!r} and {s.value!r} both carry SourceTimestamp {s.source_ts:.3f}")
            evidence += late_evidence(ctx, path)
    return graded(problems, ties, evidence, f"{n} values with sane source timestamps, in order", "timestamp problem",
                  "pair of different values with one SourceTimestamp (their order cannot be known)")
