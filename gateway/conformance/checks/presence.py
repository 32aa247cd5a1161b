"""Presence layer: every mandatory node or register exists, with the right type, unit and range metadata."""

from __future__ import annotations

from typing import Any

from gateway.bindings.modbus import outside_map
from gateway.conformance.checks import (
    FAIL,
    NOT_APPLICABLE,
    NOT_IMPLEMENTED,
    PASS,
    WARNING,
    Outcome,
    check,
    declared_absent,
    ev,
    is_required,
    missing_reason,
    served_paths,
    sub_unit_of,
    verdict,
)
from gateway.conformance.context import Context
from gateway.samples import Quality
from interface_spec.opcua_map import opcua_type, unece_unit_id
from interface_spec.recipes import hash_rule

# Paths without which the gateway cannot run a machine at all (CORE-MAPPING-002).
GATEWAY_NEEDS = ("status.heartbeat", "state.packml_state", "state.control_authority", "counters.processed_count",
                 "counters.good_count", "counters.defective_count", "identification.manufacturer", "identification.model")


def _is_sub_unit_case(case: Any, suffix: str) -> bool:
    return bool(case.sub_unit) and case.id.endswith(suffix)


@check(select=lambda c: _is_sub_unit_case(c, "-001"))
async def sub_unit_presence(ctx: Context) -> dict[str, Outcome]:
    cases = [c for c in ctx.catalogue.cases.values() if _is_sub_unit_case(c, "-001")]
    meta: dict[str, Any] = {}
    if ctx.mode == "native" and ctx.probe.protocol == "opcua":
        resolved = [p for p in ctx.probe.paths() if p not in ctx.probe.unresolved]
        meta = await ctx.probe.metadata(resolved)
    return {c.id: (_native_presence if ctx.mode == "native" else _mapped_presence)(ctx, c, meta) for c in cases}


def _native_presence(ctx: Context, case: Any, meta: dict[str, Any]) -> Outcome:
    su = sub_unit_of(case, ctx)
    spec = ctx.spec
    problems, evidence, checked = [], [], 0
    paths = served_paths(ctx, su.id)
    required = [(p, d) for p, d in paths if is_required(ctx, d)]
    if not required:
        return Outcome(NOT_IMPLEMENTED, f"{su.id} is {su.tier.value}-tier and the machine declares none of its "
                                        f"variables in its self-description", mandatory=False)
    for path, d in required:
        var = d.var
        why = missing_reason(ctx, path)
        if why is not None:
            problems.append(f"{path} is not served ({why})")
            evidence.append(ev("read", path, value=None, expected=f"{var.type} variable", note=why))
            continue
        checked += 1
        if path not in meta:
            continue
        m = meta[path]
        want_type = opcua_type(var)
        if m.data_type != want_type:
            problems.append(f"{path} has DataType {m.data_type}, the spec says {want_type}")
            evidence.append(ev("read", f"{path} DataType", value=m.data_type, expected=want_type))
        if m.writable is not None and m.writable != (var.access == "rw"):
            problems.append(f"{path} is {'writable' if m.writable else 'read-only'} (AccessLevel), the spec says "
                            f"access {var.access}")
            evidence.append(ev("read", f"{path} AccessLevel CurrentWrite", value=m.writable,
                               expected=var.access == "rw"))
        if var.type in ("float", "int", "uint"):
            unit = spec.units[var.unit]
            want_id = unece_unit_id(unit.unece)
            if m.error:
                problems.append(f"{path}: {m.error}")
            if m.unit_id != want_id:
                problems.append(f"{path} has EngineeringUnits UnitId {m.unit_id} ({m.unit_symbol}), the spec says "
                                f"{want_id} ({unit.symbol or unit.code}, {unit.name})")
                evidence.append(ev("read", f"{path} EngineeringUnits.UnitId", value=m.unit_id, expected=want_id,
                                   note=f"unit {var.unit}"))
            if var.range and m.eu_range != (float(var.range[0]), float(var.range[1])):
                problems.append(f"{path} has EURange {m.eu_range}, the spec says {tuple(var.range)}")
                evidence.append(ev("read", f"{path} EURange", value=m.eu_range, expected=list(var.range)))
    if su.array:
        n = ctx.probe.counts.get(su.id)
        evidence.append(ev("read", su.array.count_variable, value=ctx.probe.value(su.array.count_variable),
                           note=f"instances checked: 1..{n}"))
    how = "DataType, AccessLevel, EngineeringUnits and EURange as the spec says" if meta else "registers answer"
    return verdict(problems, evidence, f"{checked} variables served; {how}", "missing or wrong variable")


def _mapped_presence(ctx: Context, case: Any, meta: dict[str, Any]) -> Outcome:
    """Through a mapping: every variable the class or profile makes mandatory is mapped and reads well, unless the
    integrator declares it absent from the machine (--absent): then it is a gap, listed."""
    su = sub_unit_of(case, ctx)
    probe: Any = ctx.probe
    mapped = set(probe.paths())
    everything = [(p, d) for p, d in ctx.spec.instances(ctx.cls, probe.counts)
                  if d.sub_unit.id == su.id and d.var.origin == "equipment"]
    problems, evidence = [], []
    unmapped: dict[str, list[str]] = {}  # template -> instances
    absent: dict[str, str] = {}  # template -> the pattern declaring it
    for path, d in everything:
        if path not in mapped:
            if is_required(ctx, d) and f"identification.{d.var.id}" not in probe.nameplate_paths():
                pattern = declared_absent(ctx, d.template)
                if pattern:
                    absent[d.template] = pattern
                else:
                    unmapped.setdefault(d.template, []).append(path)
            continue
        why = missing_reason(ctx, path)
        s = probe.latest(path)
        if why is not None or (s is not None and s.quality == Quality.BAD):
            problems.append(f"{path} does not read through the mapping ({why or s.reason})")
            evidence.append(ev("read", path, value=None, note=why or s.reason))
    for template, paths in unmapped.items():
        many = f" ({len(paths)} instances)" if len(paths) > 1 else ""
        problems.append(f"{template.replace('[]', '[*]')}{many} is mandatory and not mapped")
        evidence.append(ev("mapping", template, expected="mapped", note=f"mandatory for {case.profile}; not mapped"))
    if problems:
        return verdict(problems, evidence, "", "missing or unreadable variable")
    provided = mapped | probe.nameplate_paths()
    if not any(p in provided for p, _ in everything) and not absent:
        return Outcome(NOT_IMPLEMENTED, f"{su.id} ({su.tier.value}-tier) is not mapped", mandatory=False)
    if absent:
        evidence += [ev("mapping", t, note=f"mandatory, declared absent from the machine (--absent {p})")
                     for t, p in absent.items()]
        names = [t.replace("[]", "[*]") for t in absent]
        return Outcome(WARNING, f"mapped variables read well; declared absent from the machine: "
                                f"{', '.join(names[:6])}{' ...' if len(names) > 6 else ''}", evidence)
    return Outcome(PASS, f"every variable of {su.id} is mapped and reads with good quality", evidence)


@check("CORE-MAPPING-002")
async def gateway_needs(ctx: Context) -> Outcome:
    probe: Any = ctx.probe
    mapped, nameplate = set(probe.paths()), probe.nameplate_paths()
    problems, evidence = [], []
    for path in GATEWAY_NEEDS:
        if path in nameplate:
            evidence.append(ev("mapping", path, value=probe.nameplate.get(path.split(".", 1)[1]), note="nameplate"))
            continue
        if path not in mapped:
            problems.append(f"{path} is not mapped")
            evidence.append(ev("mapping", path, note="not mapped"))
            continue
        s = probe.latest(path)
        evidence.append(ev("read", path, value=None if s is None else s.value,
                           note="" if s is None else f"quality {s.quality.name.lower()} {s.reason}".strip()))
        if s is None or s.quality == Quality.BAD:
            problems.append(f"{path} does not read ({'never read' if s is None else s.reason})")
    return verdict(problems, evidence, "heartbeat, state, control authority, counters and nameplate are all provided")


@check("CORE-OPCUA-001", "CORE-OPCUA-002")
async def opcua_nodes(ctx: Context) -> dict[str, Outcome]:
    probe: Any = ctx.probe
    unresolved = probe.unresolved
    ns = ctx.spec.core.opcua.namespace_uri
    first_problems = [f"{k}: {unresolved[k]}" for k in ("alarms.active", "events.last_seq") if k in unresolved]
    text, where = await probe.self_description()
    if text is None:
        first_problems.append(f"SelfDescription: {where}")
    variables = [p for p in probe.paths()]
    if variables and all(p in unresolved for p in variables):
        first_problems.insert(0, f"no spec variable under {probe.base} resolves (namespace {ns}): "
                                 f"{unresolved[variables[0]]}")
    first = verdict(first_problems, [ev("resolve", probe.base, note=f"namespace {ns}")],
                    f"machine object {probe.base}, ActiveCodes, LastSequence and SelfDescription found")
    methods = [k for k in probe.adapter.methods]
    second_problems = [f"{k}: {unresolved[k]}" for k in methods if k in unresolved]
    second = verdict(second_problems, [ev("resolve", k, note=unresolved.get(k, "found")) for k in methods],
                     f"{len(methods)} methods found (commands, Events/Read, Recipes)", "missing method")
    return {"CORE-OPCUA-001": first, "CORE-OPCUA-002": second}


@check("CORE-MODBUS-001", "CORE-MODBUS-003")
async def modbus_map(ctx: Context) -> dict[str, Outcome]:
    probe: Any = ctx.probe
    spec, mb = ctx.spec, ctx.spec.core.modbus
    cls = spec.get_class(ctx.cls)
    got = await probe.read(["area:marker", "area:common.header", "area:class.header", "area:end.header"])
    problems, evidence = [], []
    expected = {"area:marker": mb.marker, "area:common.header": (mb.common_block, mb.common_length),
                "area:class.header": (cls.modbus_block, cls.modbus_length), "area:end.header": (mb.end_block, 0)}
    for key, want in expected.items():
        r = got[key]
        name, address = key.split(":", 1)[1], probe.lay.areas[key.split(":", 1)[1]].address
        value = r.value if r.error or key == "area:marker" else (r.value >> 16, r.value & 0xFFFF)
        evidence.append(ev("read", f"{name} @ {address}", value=r.error or value, expected=want))
        if r.error:
            problems.append(f"{name} at {address}: {r.error}")
        elif value != want:
            problems.append(f"{name} at {address} reads {value}, expected {want}")
    first = verdict(problems, evidence, f"marker {mb.marker!r} and the block chain common -> {ctx.cls} "
                                        f"({cls.modbus_block}) -> end as the spec places them")
    keys = list(probe.plan.alarm_words) + [k for k in probe.plan.modbus_areas] + ["area:dictionary.length"]
    got = await probe.read(keys)
    problems = [f"{k}: {r.error}" for k, r in got.items() if r.error]
    n = got["area:dictionary.length"].value
    if not got["area:dictionary.length"].error and not (isinstance(n, int) and 1 <= n <= mb.dictionary_max_chars):
        problems.append(f"dictionary.length reads {n}, expected 1..{mb.dictionary_max_chars}")
    second = verdict(problems, [ev("read", k, note=r.error or "answers") for k, r in got.items()],
                     f"alarm words, command area, events mailbox and self-description area answer ({len(keys)} reads)")
    return {"CORE-MODBUS-001": first, "CORE-MODBUS-003": second}


@check("CORE-ALARM-001")
async def alarm_set(ctx: Context) -> Outcome:
    codes, raw = ctx.probe.alarm_codes()
    if codes is None:
        return Outcome(FAIL, f"the active alarm set cannot be read: {raw}", [ev("read", "alarms", note=raw)])
    return Outcome(PASS, f"active alarm set readable: {raw}", [ev("read", "alarms", value=codes, note=raw)])


@check("CORE-EVENT-001")
async def event_access(ctx: Context) -> Outcome:
    probe: Any = ctx.probe
    last = await probe.last_seq()
    evidence = [ev("read", "events.last_seq", value=last)]
    if last is None:
        return Outcome(FAIL, "the newest event sequence number cannot be read", evidence)
    if last == 0:
        return Outcome(PASS, "the sequence number reads 0: no event yet", evidence)
    got = await probe.events_from(last, 1)
    evidence.append(ev("read", f"event {last}", value=got[:1]))
    if not got or got[0].get("seq") != last:
        return Outcome(FAIL, f"event {last} (the newest) cannot be read: got {got[:1]}", evidence)
    if probe.protocol == "opcua":  # MaxCount 0 sets no client limit (rule opcua.events-read.zero)
        out = await probe.call("events.read", [last, 0])
        items = out[0] if out and isinstance(out[0], list) else out
        evidence.append(ev("call", f"Events/Read({last}, 0)", value=len(items or []), expected=">= 1"))
        if not items:
            return Outcome(FAIL, f"Events/Read({last}, 0) answers no event; MaxCount 0 sets no limit of the client's, "
                                 f"and event {last} is in the ring", evidence)
    return Outcome(PASS, f"the newest event {last} ({got[0].get('type')}) reads by its seq", evidence)


@check("CORE-MODBUS-004")
async def mailbox_check(ctx: Context) -> Outcome:
    probe: Any = ctx.probe
    declared = str(probe.value("identification.spec_version") or "")
    if hash_rule(declared) == "1.0":
        return Outcome(NOT_APPLICABLE, f"the machine declares spec {declared}: events.seq_check came in 1.1")
    last = await probe.last_seq()
    problems, evidence = [], []
    async with probe.io.lock:  # the mailbox is one window: the kit's own reads of it wait
        for asked in ([last] if last else []) + [0]:
            await probe.io.select("events.request_seq", asked)
            got = await probe.read(["events.seq", "events.seq_check"])
            seq, check_ = (got[k].error or got[k].value for k in ("events.seq", "events.seq_check"))
            evidence.append(ev("read", f"events.seq, events.seq_check after selecting {asked}", value=[seq, check_],
                               expected=[asked, asked]))
            if [seq, check_] != [asked, asked]:
                problems.append(f"selecting {asked} shows events.seq {seq} and events.seq_check {check_}, "
                                f"expected {asked} in both")
    if not last:
        problems.append("no event to select (events.last_seq is 0): a machine emits events from power-on")
    return verdict(problems, evidence, f"events.seq_check echoes the selected seq ({last}, and 0)", "mailbox problem")


@check("CORE-MODBUS-005")
async def outside_the_map(ctx: Context) -> Outcome:
    probe: Any = ctx.probe
    where = outside_map(ctx.spec, ctx.cls)
    got = await probe.read([f"outside:{name}" for name in where])
    problems, evidence = [], []
    for name, address in where.items():
        r = got[f"outside:{name}"]
        evidence.append(ev("read", f"holding register {address} ({name})", value=r.error or r.value,
                           expected="exception 2"))
        if not r.error:
            problems.append(f"register {address} ({name}) reads {r.value}; outside the map it must answer exception 2")
        elif "exception 2" not in r.error:
            problems.append(f"register {address} ({name}) answers {r.error}, expected exception 2")
    return verdict(problems, evidence, f"{len(where)} registers just outside the map answer exception 2",
                   "register (outside the map)")
