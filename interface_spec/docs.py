"""Reference docs of the line interface spec, generated as Markdown.

`render_docs(spec)` returns {file name: Markdown text}; `write_docs(folder)`
writes them. The reader is a vendor engineer who implements a conforming
machine and never sees this code, so every table is taken from the spec files
and every worked example is computed from the same register layout and
browse-name rules the gateway and the simulators use.

The pages' prose lives in `templates/` (Jinja2, one per page; the class page
serves every class); the functions here compute the tables and values that
fill them, so a change of wording is a change of a template and a change of
data never touches a paragraph.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

import jinja2

from . import modbus_codec
from .modbus_map import layout, stride
from .model import Alarm, SelfDescription, SubUnit, Tier, Variable
from .opcua_map import (
    ACTIVE_ALARMS,
    ALARMS_FOLDER,
    BINDING_METHODS,
    COMMAND_RESULT,
    COMMANDS_FOLDER,
    EU_NAMESPACE_URI,
    EVENTS_FOLDER,
    EVENTS_LAST_SEQ,
    EVENTS_READ,
    RECIPES_FOLDER,
    SELF_DESCRIPTION,
    command_inputs,
    instance_name,
    opcua_type,
    pascal,
    relative_path,
    unece_unit_id,
)
from .recipes import canonical_text, recipe_document, recipe_hash
from .spec import Spec

DOCS_DIR = Path(__file__).parent / "docs"

GENERATED_NOTE = (
    "<!-- Generated from the spec files by `linegw spec docs` (`make docs`). Do not edit by hand. -->"
)

ANCHORS: list[tuple[str, str]] = [
    ("OPC 40001-1 (OPC UA for Machinery)", "machine identification, `item_state` (MachineryItemState), `operation_mode` (MachineryOperationMode), the `Machines` folder"),
    ("OPC 30050 (PackML, ISA-TR88.00.02)", "`packml_state` codes, the acting/wait state machine and its commands, unit modes, Admin counters"),
    ("SEMI E30 (GEM)", "control authority (offline/local/remote), command acknowledgement codes (HCACK) as result codes, alarm set/clear/acknowledge, event spooling with replay"),
    ("SEMI E10", "time states (`e10_state`: PRD, SBY, ENG, SDT, UDT, NST) and the cumulative time counters"),
    ("SEMI E172 (SEDD)", "the machine's self-description (its own data dictionary)"),
    ("NAMUR NE107", "`device_health`: normal, failure, check function, off-spec, maintenance required"),
    ("MTConnect", "variable categories (sample, event, condition) and availability"),
    ("SunSpec-style Modbus", "a marker register pair, then a chain of self-describing blocks (id, length), ending in 0xFFFF"),
    ("UCUM and UN/CEFACT Rec 20", "unit codes: UCUM case-sensitive codes in the spec, UN/CEFACT common codes for OPC UA EUInformation"),
]

RESULT_MEANINGS: dict[str, str] = {
    "ok": "done; the new state or value holds now",
    "invalid_command": "no such command (unknown name or Modbus code)",
    "cannot_perform_now": "the command is not allowed now: control authority is not Remote, or the state does not allow it",
    "parameter_invalid": "a parameter is missing, of the wrong type or out of range",
    "accepted_completes_later": "accepted; the machine passes through an acting state and reports completion with a CommandCompleted event",
    "already_in_state": "nothing to do: the machine is already where the command would take it",
    "no_such_object": "the object named by a parameter (recipe, alarm) does not exist",
    "not_supported": "a valid command this machine does not implement",
}

HEALTH_MEANINGS: dict[str, str] = {
    "NORMAL": "no fault; the machine works as intended",
    "FAILURE": "the machine cannot do its job (e.g. a stop-reason alarm is active)",
    "CHECK_FUNCTION": "values are temporarily not valid: maintenance, setup or test in progress",
    "OFF_SPEC": "running outside its specified conditions (e.g. a quality alarm)",
    "MAINTENANCE_REQUIRED": "works now, but needs maintenance soon",
}

QUALITY_RULES: list[tuple[str, str, str]] = [
    ("good", "", "the value was read and passed every check"),
    ("uncertain", "out_of_range", "outside the variable's plausibility range; the value is kept"),
    ("bad", "nan", "a float that is NaN; no value is kept"),
    ("bad", "infinite", "a float that is infinite; no value is kept"),
    ("bad", "wrong_type", "the machine served a value of another type (e.g. a string for a number)"),
    ("bad", "unknown_enum_code", "an enum code that is not a member of the enumeration"),
    ("bad", "link_down", "the connection to the machine is lost; every value of the machine is marked once"),
    ("bad", "<read error>", "the read failed: the Modbus exception or OPC UA StatusCode name (e.g. `BadSensorFailure`)"),
]

PROFILE_MEANINGS: dict[str, str] = {
    "Core": "identification, status (heartbeat), state model, health, counters, alarms, events",
    "Control": "the commands (Reset, Start, Stop, ..., ResetCounters)",
    "Recipe": "recipe storage and selection: the `recipe` sub-unit, SelectRecipe, the Recipe* events, recipe transfer",
    "Traceability": "the `job` sub-unit and the Job*, MaterialConsumed and UnitProcessed events",
    "DataCollection": "the class's process variables at their sampling rates",
}


# --- Markdown building blocks ------------------------------------------------------------


def num(x: float) -> str:
    """A number as people write it: 65535, 0.5, 1000000000."""
    x = float(x)
    return str(int(x)) if x.is_integer() else repr(x)


def cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def code_block(text: str, lang: str = "") -> str:
    return f"```{lang}\n{text.rstrip()}\n```"


# The pages' prose lives in templates/ (Jinja2); the functions here compute what fills them.
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    undefined=jinja2.StrictUndefined,  # a placeholder the generator does not fill is an error, not a blank
    keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False,
)
_TEMPLATES.filters["ref"] = lambda address: ref(address)


def render_template(name: str, **values: Any) -> str:
    """A page from its template; `ref` turns a 0-based register address into its 1-based reference."""
    return _TEMPLATES.get_template(name).render(**values).rstrip() + "\n"


# --- value formatting ------------------------------------------------------------------


def type_text(v: Variable, enum_link: str = "core.md") -> str:
    if v.type == "float":
        return "float64" if v.bits == 64 else "float32"
    if v.type in ("int", "uint"):
        return f"{v.type}{v.bits or 32}"
    if v.type == "string":
        return f"string[{v.length}]"
    if v.type == "enum":
        return f"enum [{v.enum}]({enum_link}#enum-{v.enum})"
    return v.type


def unit_text(spec: Spec, code: str) -> str:
    if code == "1":
        return "`1`"  # dimensionless: a unit like any other (the rule opcua.unitless)
    u = spec.units[code]
    return f"`{code}` ({u.symbol})" if u.symbol and u.symbol != code else f"`{code}`"


def range_text(rng: tuple[float, float] | None, resolution: float | None = None) -> str:
    text = f"{num(rng[0])} … {num(rng[1])}" if rng else "—"
    return text if resolution is None else f"{text}, step {num(resolution)}"


def sampling_text(ms: int | None) -> str:
    return "on change" if ms is None else f"{ms} ms"


def tier_text(v: Variable, su: SubUnit) -> str:
    # A sub-unit's tier caps its variables: an optional sub-unit has no mandatory variables.
    order = {Tier.mandatory: 0, Tier.recommended: 1, Tier.optional: 2}
    return max(v.tier, su.tier, key=lambda t: order[t]).value


def describe(v: Variable) -> str:
    if v.origin == "gateway":
        return "**not served by the machine**: " + (v.doc or "derived by the gateway")
    return v.doc


def path_text(su: SubUnit, v: Variable) -> str:
    return f"`{su.id}[i].{v.id}`" if su.array else f"`{su.id}.{v.id}`"


def variable_rows(spec: Spec, su: SubUnit, enum_link: str) -> list[list[str]]:
    return [
        [path_text(su, v), type_text(v, enum_link), unit_text(spec, v.unit), range_text(v.range, v.resolution),
         v.category.value,
         v.access, sampling_text(v.sampling_ms), tier_text(v, su), describe(v)]
        for v in su.variables
    ]


VAR_HEADERS = ["Path", "Type", "Unit", "Range", "Category", "Access", "Sampling", "Tier", "Description"]


def enum_members(members: dict[str, int]) -> str:
    return ", ".join(f"{code} = {name}" for name, code in sorted(members.items(), key=lambda kv: kv[1]))


# --- encodings for the worked examples --------------------------------------------------


def regs_string(text: str, count: int) -> list[int]:
    return modbus_codec.encode(text, "string", count=count)


def regs_float32(x: float) -> list[int]:
    return modbus_codec.encode(x, "float32")


def regs_uint(x: int, count: int) -> list[int]:
    return modbus_codec.encode(x, {1: "uint16", 2: "uint32", 4: "uint64"}[count])


def hexregs(regs: Sequence[int]) -> str:
    return "[" + ", ".join(f"0x{r:04X}" for r in regs) + "]"


def ref(address: int) -> int:
    """1-based Modbus reference of a 0-based holding-register address."""
    return address + 1


def self_description(spec: Spec, cls: str) -> dict[str, Any]:
    """The self-description of a fully featured machine of a class (every array at its maximum)."""
    optional = [
        d.template for d in spec.variables(cls)
        if d.var.origin == "equipment" and (d.var.tier != Tier.mandatory or d.sub_unit.tier != Tier.mandatory)
    ]
    counts = {su.id: su.array.max for su in spec.array_sub_units(cls) if su.array}
    desc = SelfDescription(spec_version=spec.version, equipment_class=cls, profiles=spec.profiles(cls),
                           counts=counts, optional_variables=optional)
    return desc.model_dump(mode="json")


def core_events(spec: Spec) -> list[str]:
    """Event types no class lists: every machine may emit them."""
    listed = {e for c in spec.classes.values() for e in c.events}
    return [e.id for e in spec.core.events if e.id not in listed]


def emitted_by(spec: Spec, event_id: str) -> str:
    classes = [c.id for c in spec.classes.values() if event_id in c.events]
    return ", ".join(classes) if classes else "every machine"


# --- README.md -------------------------------------------------------------------------------


def render_index(spec: Spec) -> str:
    core = spec.core
    pieces = "\n".join([
        "common.yaml  — the core every machine carries: identification, state model (PackML),",
        "               commands, result codes, alarms model, events, units, quality, heartbeat",
        "   + " + " | ".join(f"{c}.yaml" for c in spec.classes),
        "             — a class profile: the class's sub-units and variables, alarm catalogue,",
        "               events, unit_processed measurements, recipe parameters",
        "   = the data model of one machine (core + its class)",
        "",
        "   served over ONE binding:",
        f"     OPC UA  — opcua.md:  Objects/{core.opcua.machines_folder}/<machine>/<SubUnit>/<Variable>, methods",
        f"     Modbus  — modbus.md: holding registers from {core.modbus.base_address}: marker, common block,",
        f"               class block, end; self-description JSON at {core.modbus.dictionary_address}",
        "",
        "   + the self-description: the machine's own data dictionary (JSON), served on both",
    ])
    documents: list[list[Any]] = [
        ["[core.md](core.md)", "Core: identification, status and heartbeat, state model and PackML, health, counters, "
         "commands and result codes, alarms, events, quality, units, enumerations, self-description"],
    ]
    for cid, cls in spec.classes.items():
        documents.append([f"[{cid}.md]({cid}.md)", f"Class profile `{cid}`: {cls.title}"])
    documents += [
        ["[opcua.md](opcua.md)", "OPC UA binding: namespace, address space, browse names, data types, EU properties, methods"],
        ["[modbus.md](modbus.md)", "Modbus TCP binding: marker, block chain, encodings, register tables, command handshake, "
         "events mailbox, alarm bits, self-description area"],
        ["[../schema/](../schema/)", "JSON Schemas: `core.schema.json` (common.yaml), `class.schema.json` (class files), "
         "`self-description.schema.json` (what a machine serves)"],
    ]
    classes = []
    for cid, cls in spec.classes.items():
        vars_ = [d for d in spec.variables(cid) if d.owner == cid]
        classes.append([f"[`{cid}`]({cid}.md)", cls.title, f"`{cls.processed_unit}`", len(cls.sub_units), len(vars_),
                        len(cls.alarms), cls.modbus_block])
    first = next(iter(spec.classes))
    profiles = [[f"`{p}`", PROFILE_MEANINGS.get(p, "")] for p in spec.profiles(first)[:-1]]
    profiles.append([", ".join(f"`{spec.profiles(c)[-1]}`" for c in spec.classes),
                     "the class profile (one, matching `identification.equipment_class`)"])
    return render_template(
        "README.md.j2", generated_note=GENERATED_NOTE, version=spec.version, title=core.title,
        pieces=code_block(pieces),
        documents=table(["Document", "Content"], documents),
        classes=table(["Class", "Title", "Processed unit", "Sub-units", "Variables", "Alarms", "Modbus block id"], classes),
        profiles=table(["Profile", "Covers"], profiles),
        heartbeat_period=num(core.heartbeat_period_s), heartbeat_timeout=num(core.heartbeat_timeout_s),
        anchors=table(["Standard", "What the spec takes from it"], ANCHORS),
    )


# --- core.md ------------------------------------------------------------------------------


STATE_ENUMS = [
    ("item_state", "OPC 40001-1 MachineryItemState: is the machine executing its task?"),
    ("operation_mode", "OPC 40001-1 MachineryOperationMode: what the machine is set up to do"),
    ("control_authority", "SEMI E30 control state: who may command the machine. Commands are taken only in Remote."),
    ("e10_state", "SEMI E10 time state: PRD productive, SBY standby, ENG engineering, SDT scheduled downtime, "
     "UDT unscheduled downtime, NST non-scheduled"),
    ("packml_state", "OPC 30050 PackML state, see [PackML state machine](#packml-state-machine)"),
    ("unit_mode", "OPC 30050 PackML unit mode"),
]


def rules_text(spec: Spec, section: str) -> str:
    """The spec's rules of one section, as a list with their ids (the conformance kit's coverage cites them)."""
    return "\n".join(f"- {r.text} *(rule `{r.id}`)*" for r in spec.core.rules if r.section == section)


def hash_vectors(spec: Spec) -> str:
    rows = []
    for v in spec.core.recipe_hash.vectors:
        doc = recipe_document(v.equipment_class, v.id, v.version, dict(v.parameters))
        rows.append([f"`{json.dumps(doc, ensure_ascii=False)}`", f"`{canonical_text(doc).decode('utf-8')}`",
                     f"`{recipe_hash(v.equipment_class, v.id, v.version, dict(v.parameters))}`"])
    return table(["Recipe (as YAML/JSON reads it)", "RFC 8785 text", "hash"], rows)


def render_core(spec: Spec) -> str:
    core = spec.core
    pm = core.packml
    subs = {su.id: su for su in core.sub_units}
    by_code = itemgetter(1)  # (name, code) pairs in code order
    states = [[code, name, "— (state not known, e.g. during start-up)" if name == "Undefined"
               else "acting" if name in pm.acting_states else "wait"]
              for name, code in sorted(pm.states.items(), key=by_code)]
    reach = {t.target for t in pm.transitions} | {t.acting for t in pm.transitions if t.acting} | {"Stopped"}
    outside = [st for st in pm.states if st not in reach and st != "Undefined"]
    legend = sorted({(spec.result_codes[spec.packml_command(st, c).result], spec.packml_command(st, c).result)
                     for st in pm.states for c in pm.commands})
    results = []
    for name, _ in sorted(pm.states.items(), key=by_code):
        row = [name]
        for c in pm.commands:
            out = spec.packml_command(name, c)
            code = spec.result_codes[out.result]
            row.append(f"**{code}**" if out.result in ("ok", "accepted_completes_later") else str(code))
        results.append(row)
    commands = []
    for cmd in core.commands:
        params = "; ".join(
            f"`{p.name}`: {p.type}{' ' + p.enum if p.enum else ''}{'' if p.required else ' (optional)'}"
            + (f" — {p.doc}" if p.doc else "")
            for p in cmd.params
        ) or "—"
        t = next((t for t in pm.transitions if t.command == cmd.id), None)
        what = cmd.doc or (f"{', '.join(t.source)} → {t.acting + ' → ' if t.acting else ''}{t.target}" if t else "")
        commands.append([cmd.code, f"`{cmd.id}`", params, "PackML" if cmd.id in pm.commands else "—", what])
    events = [{"id": e.id, "code": e.code, "doc": e.doc, "payload": bool(e.payload),
               "table": table(["Field", "Type", "Required", "Description"],
                              [[f"`{f.name}`", f.type, "yes" if f.required else "optional", f.doc] for f in e.payload])}
              for e in core.events]
    example_class = next(iter(spec.classes))
    return render_template(
        "core.md.j2", generated_note=GENERATED_NOTE, version=spec.version,
        core_sub_units=table(["Sub-unit", "Tier", "Variables", "Description"],
                             [[f"`{su.id}`", su.tier.value, len(su.variables), su.doc] for su in core.sub_units]),
        docs={sid: su.doc for sid, su in subs.items()},
        vars={sid: table(VAR_HEADERS, variable_rows(spec, su, "")) for sid, su in subs.items()},
        class_list=", ".join(f"`{c}`" for c in spec.classes),
        heartbeat_period=num(core.heartbeat_period_s), heartbeat_timeout=num(core.heartbeat_timeout_s),
        state_enums=table(["Variable", "Members (code = name)", "Meaning"],
                          [[f"`state.{n}`", enum_members(core.enums[n]), m] for n, m in STATE_ENUMS if n in core.enums]),
        packml_states=table(["Code", "State", "Kind"], states),
        transitions=table(["Command", "Code", "Source states", "Acting state", "Target state"],
                          [[t.command, spec.commands[t.command].code if t.command in spec.commands else "",
                            ", ".join(t.source), t.acting or "—", t.target] for t in pm.transitions]),
        outside=", ".join(outside),
        command_results=table(["State \\ Command", *pm.commands], results),
        legend="; ".join(f"`{code}` {name}" for code, name in legend),
        unit_modes=table(["Code", "Unit mode"], [[c, n] for n, c in sorted(pm.unit_modes.items(), key=by_code)]),
        health_states=table(["Code", "Status", "Meaning"],
                            [[c, n, HEALTH_MEANINGS.get(n, "")] for n, c in sorted(core.enums["device_health"].items(), key=by_code)]),
        commands=table(["Code", "Command", "Parameters", "Kind", "What it does"], commands),
        result_codes=table(["Code", "Name", "Meaning"],
                           [[c, f"`{n}`", RESULT_MEANINGS.get(n, "")] for n, c in sorted(core.result_codes.items(), key=by_code)]),
        core_alarms=table(["Code", "Id", "Text", "Severity", "Category", "Source", "Stop reason", "Kind"], alarm_rows(core.alarms)),
        event_types=table(["Code", "Type", "Emitted by", "Description"],
                          [[e.code, f"[`{e.id}`](#{e.id.lower()}-{e.code})", emitted_by(spec, e.id), e.doc] for e in core.events]),
        events=events,
        quality_members=enum_members(core.enums["quality"]),
        quality=table(["Quality", "Reason", "When"], [[q, f"`{r}`" if r else "—", w] for q, r, w in QUALITY_RULES]),
        eu_namespace=EU_NAMESPACE_URI,
        units=table(["UCUM code", "Name", "Symbol", "UN/CEFACT", "OPC UA UnitId"],
                    [[f"`{u.code}`", u.name, u.symbol or "—", u.unece or "— (none)",
                      unece_unit_id(u.unece) if u.unece else "-1"] for u in core.units]),
        enums=[(name, table(["Code", "Member"], [[c, n] for n, c in sorted(members.items(), key=by_code)]))
               for name, members in core.enums.items()],
        example_class=example_class,
        rules={section: rules_text(spec, section) for section in {r.section for r in core.rules}},
        derivation_packml=table(["PackML state", "item_state", "e10_state"],
                                [[st, d.item_state, d.e10_state] for st, d in
                                 sorted(core.state_derivation.packml.items(), key=lambda kv: pm.states[kv[0]])]),
        derivation_mode=table(["Operation mode", "item_state", "e10_state"],
                              [[m, d.item_state or "—", d.e10_state or "—"]
                               for m, d in core.state_derivation.operation_mode.items()]),
        derivation_unit_mode=", ".join(f"{m} → {u}" for m, u in core.state_derivation.unit_mode.items()),
        derivation_authority=core.state_derivation.authority,
        hash_vectors=hash_vectors(spec),
        changelog="\n\n".join(f"### {c.version}\n\n" + "\n".join(f"- {x}" for x in c.changes) for c in core.changelog),
        example_self_description=code_block(json.dumps(self_description(spec, example_class), indent=2), "json"),
    )


def alarm_rows(alarms: Iterable[Alarm]) -> list[list[Any]]:
    return [[a.code, f"`{a.id}`", a.text, a.severity, a.category, f"`{a.source}`", "yes" if a.stop_reason else "no",
             a.kind] for a in alarms]


# --- class pages ------------------------------------------------------------------------------


def example_value(spec: Spec, cid: str, name: str) -> float:
    """A plausible value for a measurement: mid-range of the class variable it reports, if one matches."""
    for d in spec.variables(cid):
        if d.owner == cid and d.var.id in (name, f"result_{name}") and d.var.range:
            lo, hi = d.var.range
            return round(lo + (hi - lo) * 0.4, 3)
    return 1.0


def render_class(spec: Spec, cid: str) -> str:
    cls = spec.get_class(cid)
    words = layout(spec.core, cls).areas["alarms.active"]
    own = [d for d in spec.variables(cid) if d.owner == cid]
    tiers = {t.name: sum(1 for d in own if tier_text(d.var, d.sub_unit) == t.value) for t in Tier}
    sub_units = [[f"[`{su.id}`](#{su.id})", su.tier.value,
                  f"1 … {su.array.max}, count in `{su.array.count_variable}`" if su.array else "—", len(su.variables), su.doc]
                 for su in cls.sub_units]
    arrays = ", ".join(f"`{su.id}[1].{su.variables[0].id}` … `{su.id}[{su.array.max}].{su.variables[0].id}`"
                       for su in cls.sub_units if su.array)
    enums = sorted({v.enum for su in cls.sub_units for v in su.variables if v.enum})
    alarms = [[i, f"{i // 16} / {i % 16}", f"{words.address + i // 16} / {ref(words.address + i // 16)}", a.code, f"`{a.id}`",
               a.text, a.severity, a.category, f"`{a.source}`", "yes" if a.stop_reason else "no", a.kind]
              for i, a in enumerate(spec.alarms(cid))]
    example_event = {
        "type": "UnitProcessed", "equipment": f"{cid}1", "source_ts": 1767225600.5, "seq": 1207,
        "payload": {"unit_type": cls.processed_unit,
                    "unit_id": "".join(w[0] for w in cls.processed_unit.split("_")).upper() + "-000123",
                    "result": "good", "made_from": ["<input id>", "<input id>"],
                    "measurements": {n: example_value(spec, cid, n) for n in cls.unit_processed}, "job_id": "LOT-42"},
    }
    params: dict[str, Any] = {}
    for p in cls.recipe:
        if p.type == "string":
            params[p.name] = "A"
        elif p.range:
            mid = (p.range[0] + p.range[1]) / 2
            params[p.name] = int(mid) if p.type == "int" else round(mid, 3)
        else:
            params[p.name] = 0
    return render_template(
        "class.md.j2", generated_note=GENERATED_NOTE, version=spec.version, cid=cid, cls=cls,
        profiles=", ".join(f"`{p}`" for p in spec.profiles(cid)), n_variables=len(own), tiers=tiers,
        sub_units=table(["Sub-unit", "Tier", "Array", "Variables", "Description"], sub_units), arrays=arrays,
        variables=[{"id": su.id, "doc": su.doc, "table": table(VAR_HEADERS, variable_rows(spec, su, "core.md"))}
                   for su in cls.sub_units],
        enums=table(["Enum", "Members (code = name)"], [[f"[`{e}`](core.md#enum-{e})", enum_members(spec.enum(e))] for e in enums])
        if enums else "",
        alarm_words_address=words.address, alarm_words_ref=ref(words.address),
        alarms=table(["Position", "Word / bit", "Address / ref", "Code", "Id", "Text", "Severity", "Category", "Source",
                      "Stop reason", "Kind"], alarms),
        core_events=", ".join(core_events(spec)),
        events=table(["Code", "Event", "Description"],
                     [[spec.events[e].code, f"[`{e}`](core.md#{e.lower()}-{spec.events[e].code})", spec.events[e].doc]
                      for e in cls.events]),
        measurements=table(["Measurement", "Unit", "Unit name"],
                           [[f"`{n}`", f"`{u}`" + (f" ({spec.units[u].symbol})" if spec.units[u].symbol not in ("", u) else ""),
                             spec.units[u].name] for n, u in cls.unit_processed.items()]),
        example_event=code_block(json.dumps(example_event, indent=2), "json"),
        recipe=table(["Parameter", "Type", "Unit", "Range", "Description"],
                     [[f"`{p.name}`", p.type, unit_text(spec, p.unit), range_text(p.range), p.doc] for p in cls.recipe])
        if cls.recipe else "",
        example_recipe=code_block(json.dumps({"id": f"{cid.upper()}-STD", "version": 1, "parameters": params}, indent=2), "json"),
        self_description=code_block(json.dumps(self_description(spec, cid), indent=2), "json"),
    )


# --- opcua.md -----------------------------------------------------------------------------------


def render_opcua(spec: Spec) -> str:
    core = spec.core
    ua = core.opcua
    arrays = [su for c in spec.classes.values() for su in c.sub_units if su.array]
    plain = next(d for d in spec.variables(next(iter(spec.classes)))
                 if d.owner != "core" and not d.sub_unit.array and d.var.category.value == "sample")
    ex_var = "/".join(relative_path(plain.sub_unit, plain.var.id))
    ex_arr = "/".join(relative_path(arrays[0], arrays[0].variables[0].id, 3)) if arrays else ""
    address_space = "\n".join([
        "Objects/                                   (standard)",
        f"  {ua.machines_folder}/                                (FolderType, spec namespace)",
        "    <machine>/                             one object per machine; the name is chosen per machine",
        f"      <SubUnit>/<Variable>                 a spec variable, e.g. {ex_var}",
        f"      <SubUnit>_<NN>/<Variable>            array instance NN (1-based), e.g. {ex_arr}",
        f"      {COMMANDS_FOLDER}/<Command>(...) -> ResultCode   one method per command, e.g. Commands/Start",
        f"      {ALARMS_FOLDER}/{ACTIVE_ALARMS}                   UInt32[]: codes of the active alarms",
        f"      {EVENTS_FOLDER}/{EVENTS_LAST_SEQ}                 UInt32: seq of the newest event",
        f"      {EVENTS_FOLDER}/{EVENTS_READ}(FromSequence, MaxCount) -> String[]  events as JSON envelopes",
        f"      {RECIPES_FOLDER}/List(), Get(RecipeId), Put(Recipe)  recipe transfer",
        f"      {SELF_DESCRIPTION}                      String: the self-description JSON",
    ])
    commands = [[f"`{COMMANDS_FOLDER}/{c.id}`", ", ".join(f"{a.name}: {a.data_type}" for a in command_inputs(c.params)) or "—",
                 f"{COMMAND_RESULT.name}: {COMMAND_RESULT.data_type}", c.code] for c in core.commands]
    binding_nodes = [
        [f"`{ALARMS_FOLDER}/{ACTIVE_ALARMS}`", "Variable", "UInt32[] (ValueRank 1)", "the codes of the active alarms, in any order; empty when none"],
        [f"`{EVENTS_FOLDER}/{EVENTS_LAST_SEQ}`", "Variable", "UInt32", "seq of the newest event; 0 before the first"],
        *[[f"`{m.folder}/{m.name}`", "Method",
           f"({', '.join(f'{a.name}: {a.data_type}' for a in m.inputs)}) → "
           f"{', '.join(a.name + ': ' + a.data_type + ('[]' if a.array else '') for a in m.outputs)}", m.doc]
          for m in BINDING_METHODS],
        [f"`{SELF_DESCRIPTION}`", "Variable", "String", "the [self-description](core.md#self-description), compact JSON"],
    ]
    # The worked examples: the first class's first writable float, and its first array.
    first = next(iter(spec.classes))
    cls = spec.get_class(first)
    var = next(d for d in spec.variables(first) if d.owner == first and not d.sub_unit.array
               and d.var.type == "float" and d.var.access == "rw")
    unit = spec.units[var.var.unit]
    example = {"path": var.path(), "cls": first, "machine": f"{first.capitalize()}1",
               "browse": "/".join(relative_path(var.sub_unit, var.var.id)), "unit": unit,
               "unit_id": unece_unit_id(unit.unece), "range": range_text(var.var.range)}
    arr = next((su for su in cls.sub_units if su.array), None)
    example_array = None
    if arr is not None and arr.array:
        v0 = arr.variables[0]
        example_array = {"first_path": f"{arr.id}[3].{v0.id}", "first_browse": "/".join(relative_path(arr, v0.id, 3)),
                         "max": arr.array.max, "last_browse": "/".join(relative_path(arr, v0.id, arr.array.max))}
    classes = []
    for cid in spec.classes:
        rows = []
        for d in spec.variables(cid):
            if d.var.origin != "equipment":
                continue
            v, su = d.var, d.sub_unit
            folder = f"{pascal(su.id)}_{'N' * max(2, len(str(su.array.max)))}" if su.array else pascal(su.id)
            numeric = v.type in ("float", "int", "uint")
            u = spec.units[v.unit]
            eu = f"{u.symbol or '1'} / {unece_unit_id(u.unece)}" if numeric else "—"
            rows.append([f"`{d.template}`", f"`{folder}/{pascal(v.id)}`", opcua_type(v), eu,
                         range_text(v.range) if numeric else "—", "read/write" if v.access == "rw" else "read"])
        classes.append({
            "id": cid,
            "table": table(["Spec path", "Browse path", "DataType", "EU symbol / UnitId", "EURange", "Access"], rows),
            "arrays": [{"folder": f"{pascal(su.id)}_{'N' * max(2, len(str(su.array.max)))}", "first": instance_name(su, 1),
                        "last": instance_name(su, su.array.max), "count_variable": su.array.count_variable}
                       for su in spec.array_sub_units(cid) if su.array],
        })
    names = {"commands": COMMANDS_FOLDER, "machines": ua.machines_folder, "events": EVENTS_FOLDER,
             "last_seq": EVENTS_LAST_SEQ, "read": EVENTS_READ}
    return render_template(
        "opcua.md.j2", generated_note=GENERATED_NOTE, version=spec.version, ns=ua.namespace_uri, n=names,
        rules=rules_text(spec, "opcua"),
        address_space=code_block(address_space),
        pascal_examples=", ".join(f"`{x}` → `{pascal(x)}`" for x in ("line_speed", "coating_head", "e10_state")),
        array_instances=", ".join(f"`{instance_name(su, 1)}` … `{instance_name(su, su.array.max)}`" for su in arrays if su.array),
        eu_namespace=EU_NAMESPACE_URI,
        commands=table(["Method", "Inputs", "Output", "Modbus code"], commands),
        binding_nodes=table(["Node", "Kind", "Type / signature", "Meaning"], binding_nodes),
        ex=example, arr=example_array, has_start="Start" in spec.commands, classes=classes,
    )


# --- modbus.md -----------------------------------------------------------------------------------


def _access(a: str) -> str:
    return "read/write" if a == "rw" else "read"


def modbus_rows(spec: Spec, cid: str) -> list[list[Any]]:
    """The register table of a class in address order: arrays as their first instance plus stride."""
    cls = spec.get_class(cid)
    core = spec.core
    lay = layout(core, cls)
    rows: list[tuple[int, list[Any]]] = []

    def area(name: str, what: str) -> None:
        p = lay.areas[name]
        rows.append((p.address, [p.address, ref(p.address), f"`{name}`", p.dtype, p.count, _access(p.access), "—", what]))

    def block(sub_units: list[SubUnit]) -> None:
        for su in sub_units:
            if su.array:
                continue
            for v in su.variables:
                if v.origin != "equipment":
                    continue
                p = lay.point(f"{su.id}.{v.id}")
                rows.append((p.address, [p.address, ref(p.address), f"`{su.id}.{v.id}`", p.dtype, p.count,
                                         _access(p.access), unit_text(spec, v.unit), v.doc]))
        for su in sub_units:
            if not su.array:
                continue
            size = stride(su)
            for v in su.variables:
                if v.origin != "equipment":
                    continue
                p = lay.point(f"{su.id}[1].{v.id}")
                note = f"instance i at {p.address} + (i−1)·{size}; i = 1 … {su.array.max}"
                rows.append((p.address, [p.address, ref(p.address), f"`{su.id}[1].{v.id}`", p.dtype, p.count,
                                         _access(p.access), unit_text(spec, v.unit), note]))

    mb = core.modbus
    area("marker", f"ASCII \"{mb.marker}\"")
    area("common.header", f"[{mb.common_block}, {mb.common_length}]: common block id, length")
    block(core.sub_units)
    for name, what in [
        ("alarms.active", f"{mb.alarm_words} words of alarm bits, see [alarm bit words](#alarm-bit-words)"),
        ("command.code", "command code"), ("command.seq", "written last: runs the command"),
        ("command.param_int", "number parameter"), ("command.param_text", f"text parameter, {lay.areas['command.param_text'].count * 2} characters"),
        ("command.result_seq", "seq of the last command run"), ("command.result_code", "its result code"),
        ("events.last_seq", "seq of the newest event"), ("events.request_seq", "write a seq to present that event"),
        ("events.seq", "seq of the presented event; 0: not held"), ("events.type", "event type code"),
        ("events.source_ts", "ms since the Unix epoch"), ("events.payload_len", "payload length, characters"),
        ("events.payload", f"payload JSON, at most {mb.event_payload_chars} characters"),
    ]:
        area(name, what)
    used = lay.areas["common.used_end"].address
    common_end = lay.common_start + mb.common_length
    if used < common_end:
        rows.append((used, [f"{used}–{common_end - 1}", f"{ref(used)}–{ref(common_end - 1)}", "(reserved)", "—",
                            common_end - used, "—", "—", "reads 0"]))
    area("class.header", f"[{cls.modbus_block}, {cls.modbus_length}]: class block id, length")
    block(cls.sub_units)
    # Gaps inside the class block: reserved tails of arrays and the block's unused end.
    cused = lay.areas["class.used_end"].address
    if cused < lay.class_end:
        rows.append((cused, [f"{cused}–{lay.class_end - 1}", f"{ref(cused)}–{ref(lay.class_end - 1)}", "(reserved)",
                             "—", lay.class_end - cused, "—", "—", "reads 0"]))
    area("end.header", f"[{mb.end_block}, 0]: end of the chain")
    rows.sort(key=lambda r: r[0])
    return [r for _, r in rows]


def render_modbus(spec: Spec) -> str:
    core = spec.core
    mb = core.modbus
    first = next(iter(spec.classes))
    lay0 = layout(core, spec.get_class(first))
    A = lay0.areas

    def area_table(areas: dict[str, Any]) -> str:
        return table(["Register", "Address", "Ref", "dtype", "Count", "Access"],
                     [[f"`{n}`", p.address, ref(p.address), p.dtype, p.count, _access(p.access)] for n, p in areas.items()])

    cls_rows = []
    for c in spec.classes.values():
        lay = layout(core, c)
        hdr, end = lay.areas["class.header"], lay.areas["end.header"]
        cls_rows.append([f"`{c.id}`: class block header, data", f"{hdr.address}–{hdr.end - 1}, {lay.class_start}–{lay.class_end - 1}",
                         f"[{c.modbus_block}, {c.modbus_length}], then the class's variables (arrays last), the rest reserved"])
        cls_rows.append([f"`{c.id}`: end header", f"{end.address}–{end.end - 1}", f"[{mb.end_block}, 0] (0x{mb.end_block:04X}, 0)"])
    chain = table(["What", "Address", "Registers"], [
        ["marker", f"{A['marker'].address}–{A['marker'].end - 1}", f"\"{mb.marker}\" = {hexregs(regs_string(mb.marker, 2))}"],
        ["common block header", f"{A['common.header'].address}–{A['common.header'].end - 1}", f"[{mb.common_block}, {mb.common_length}]"],
        ["common block data", f"{lay0.common_start}–{lay0.common_start + mb.common_length - 1}",
         "core variables, then alarm words, command area, events mailbox; the rest reserved"],
        *cls_rows,
        ["self-description", f"{A['dictionary.length'].address}–{A['dictionary.text'].end - 1}", "length, then JSON text; outside the chain"],
    ])
    cmd = {n: A[n] for n in A if n.startswith("command.")}
    first_cmd = cmd["command.code"].address
    command = {"first": first_cmd, "span": cmd["command.param_text"].end - first_cmd,
               "text_count": cmd["command.param_text"].count, "result_seq": cmd["command.result_seq"].address}
    start = None
    if (start_cmd := spec.commands.get("Start")) is not None:
        seq, text = 17, "LOT-42"
        regs = [start_cmd.code, seq, 0, 0] + regs_string(text, cmd["command.param_text"].count)
        start = {"text": text, "code": start_cmd.code, "seq": seq, "regs": regs,
                 "block": code_block(f"{regs[:4]} + \"{text}\" {hexregs(regs[4:7])} + {len(regs) - 7} × 0x0000\n"
                                     f"= [{', '.join(str(r) for r in regs)}]")}
    ack = spec.commands.get("AcknowledgeAlarm")
    ev = {n: A[n] for n in A if n.startswith("events.")}
    events = {"request": ev["events.request_seq"].address, "seq": ev["events.seq"].address,
              "window": ev["events.seq_check"].end - ev["events.seq"].address}
    job_started = None
    if (jt := spec.events.get("JobStarted")) is not None:
        js = json.dumps({"job_id": "LOT-42"}, separators=(",", ":"))
        ts = 1767225600125
        job_started = {"code": jt.code, "ts": ts, "ts_regs": regs_uint(ts, 4), "payload": js,
                       "payload_regs": hexregs(regs_string(js, (len(js) + 1) // 2))}
    cls0 = spec.get_class(first)
    alarms0 = spec.alarms(first)
    alarm = None
    if len(alarms0) > len(core.alarms) and cls0.alarms:
        pos = alarms0.index(cls0.alarms[0])
        alarm = {"code": cls0.alarms[0].code, "id": cls0.alarms[0].id, "pos": pos, "value": 1 << (pos % 16),
                 "hex": f"0x{1 << (pos % 16):04X}"}
    dl, dt = A["dictionary.length"], A["dictionary.text"]
    desc = json.dumps(self_description(spec, first), separators=(",", ":"), ensure_ascii=True)
    var = next(d for d in spec.variables(first) if d.owner == first and not d.sub_unit.array
               and d.var.type == "float" and d.var.access == "rw")
    value = {"path": var.path(), "address": lay0.point(var.path()).address, "unit": spec.units[var.var.unit].name}
    arr = next((su for su in cls0.sub_units if su.array), None)
    example_array = None
    if arr is not None and arr.array:
        v0 = arr.variables[0]
        example_array = {"id": arr.id, "var": v0.id, "first": lay0.point(f"{arr.id}[1].{v0.id}").address, "stride": stride(arr),
                         "third": lay0.point(f"{arr.id}[3].{v0.id}").address, "count_variable": arr.array.count_variable}
    classes = []
    for cid in spec.classes:
        c = spec.get_class(cid)
        lay = layout(core, c)
        classes.append({
            "id": cid, "title": c.title, "block": c.modbus_block, "length": c.modbus_length, "start": lay.class_start,
            "header": lay.areas["class.header"].address, "end": lay.areas["end.header"].address,
            "table": table(["Address", "Ref", "Name", "dtype", "Regs", "Access", "Unit", "Notes"], modbus_rows(spec, cid)),
            "arrays": "; ".join(f"`{su.id}` stride {stride(su)}, {su.array.max} instances, {stride(su) * su.array.max} registers "
                                f"from {lay.point(f'{su.id}[1].{su.variables[0].id}').address}"
                                for su in c.sub_units if su.array),
        })
    return render_template(
        "modbus.md.j2", generated_note=GENERATED_NOTE, version=spec.version, mb=mb,
        float_example=" ".join(f"0x{r:04X}" for r in regs_float32(12.5)), float_regs=hexregs(regs_float32(12.5)),
        chain=chain, class_block_ids=", ".join(f"{c.modbus_block} = {c.id}" for c in spec.classes.values()),
        command_area=area_table(cmd), cmd=command, start=start, ack_code=ack.code if ack is not None else None,
        mailbox=area_table(ev), ev=events, job_started=job_started, aw=A["alarms.active"], first=first, alarm=alarm,
        dictionary=table(["Register", "Address", "Ref", "dtype", "Count", "Access"],
                         [["`dictionary.length`", dl.address, ref(dl.address), dl.dtype, dl.count, "read"],
                          ["`dictionary.text`", dt.address, ref(dt.address), dt.dtype, dt.count, "read"]]),
        dict_text=dt.address, dict_length=dl.address, desc=desc, desc_registers=(len(desc) + 1) // 2,
        value=value, arr=example_array, packml_state=lay0.point("state.packml_state").address, classes=classes,
        rules=rules_text(spec, "modbus"),
    )


# --- all together ----------------------------------------------------------------------------------


def render_docs(spec: Spec) -> dict[str, str]:
    """Every reference page, by file name."""
    pages = {"README.md": render_index(spec), "core.md": render_core(spec)}
    for cid in spec.classes:
        pages[f"{cid}.md"] = render_class(spec, cid)
    pages["opcua.md"] = render_opcua(spec)
    pages["modbus.md"] = render_modbus(spec)
    return pages


def write_docs(folder: str | Path = DOCS_DIR, spec: Spec | None = None) -> list[Path]:
    """Write the reference pages into `folder`; returns the files written."""
    from .spec import load_spec

    spec = spec or load_spec()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_docs(spec).items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


__all__ = ["DOCS_DIR", "render_docs", "write_docs"]
