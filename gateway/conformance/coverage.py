"""The coverage matrix: every normative clause of the spec, and the case that checks it or why none can.

The clauses are generated from the spec, so a clause added to the spec shows here at once:

* every column of every variable table (type, unit, range, resolution, access, category, tier, sampling),
  per sub-unit;
* every row of the state derivation table and every PackML transition;
* every command, every event type and each of its payload fields, the alarm catalogue;
* the heartbeat, the recipe hash, the bindings' constants and every rule (`rules:` in common.yaml).

Each clause maps to the catalogue cases that check it, or to a stated reason why the kit cannot. A clause with
neither is a gap: `gaps()` lists them and the test suite fails on any. The matrix is published in the vendor guide
(`linegw conformance --coverage`).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.conformance.catalogue import Catalogue
from interface_spec import Spec
from interface_spec.model import SubUnit


@dataclass(frozen=True)
class Clause:
    id: str  # "<file> § <where>", stable for a spec version
    what: str
    cases: tuple[str, ...] = ()
    reason: str = ""  # why no case can check it

    @property
    def covered(self) -> bool:
        return bool(self.cases) or bool(self.reason)


# Why a variable-table column is, or is not, something the kit can observe.
NO_CATEGORY = ("the category (MTConnect sample, event, condition) says how the gateway files a value; it asks "
               "nothing of the machine a client could observe")
NO_RESOLUTION = "the resolution is the step the gateway shows values to; a machine may send finer values"
NO_ACCESS = ("the kit writes no set-point: a write changes production. Over OPC UA the AccessLevel is checked "
             "(<sub-unit>-001); a Modbus register cannot say it is read-only without being written")
NO_POWER_CYCLE = ("needs the machine switched off and on, which the kit cannot do and which would stop production; "
                  "a link drop (CORE-LINK-002) shows the ring and the chain across an outage only")
NO_PANEL = "needs the machine's panel (its key switch or buttons), which only a person at the machine can use"

# Commands outside the PackML table: the cases that send them.
COMMAND_CASES = {
    "SetOperationMode": ("CTRL-MODE-001", "CTRL-MODE-ERR-001"),
    "SelectRecipe": ("RECIPE-SELECT-001", "RECIPE-SELECT-ERR-001", "CTRL-CMD-ERR-002"),
    "AcknowledgeAlarm": ("CTRL-ALARM-ERR-001",),
    "ResetCounters": ("CTRL-COUNTERS-001",),
}
# Event types: the cases that check when they are emitted (their payload fields: CORE-EVENT-003 for all).
EVENT_CASES = {
    "StateChanged": ("CORE-EVENT-004", "CTRL-PACKML-010"),
    "AlarmRaised": ("CORE-ALARM-003",),
    "AlarmCleared": ("CORE-ALARM-003",),
    "CommandCompleted": ("CTRL-PACKML-001",),
    "CountersReset": ("CTRL-COUNTERS-001", "CORE-COUNTERS-003"),
    "RecipeChanged": ("RECIPE-TRANSFER-001",),
    "RecipeActivated": ("RECIPE-SELECT-001",),
    "RecipeRejected": ("RECIPE-TRANSFER-ERR-001",),
    "JobStarted": ("TRACE-JOB-003",),
    "JobCompleted": ("TRACE-JOB-003",),
    "JobAborted": ("TRACE-JOB-003",),
    "UnitProcessed": ("TRACE-UNIT-001", "TRACE-UNIT-002"),
}
EVENT_REASONS = {
    "AlarmAcknowledged": "an acknowledgement needs an occurrence to acknowledge, which only the machine can raise; "
                         "its payload is checked by CORE-EVENT-003 whenever one is read",
    "MaterialConsumed": "loading material is the operator's; its payload is checked by CORE-EVENT-003 whenever one "
                        "is read, and TRACE-UNIT-001 checks the inputs a unit names",
}
# The rules of common.yaml: the cases that check each, or why none can.
RULE_COVERAGE: dict[str, tuple[str, ...] | str] = {
    "power-on.ring": NO_POWER_CYCLE,
    "power-on.previous": NO_POWER_CYCLE,
    "power-on.alarms": NO_POWER_CYCLE,
    "state.derivation": ("CORE-STATE-003",),
    "command.set-mode.same": ("CTRL-MODE-001",),
    "command.set-mode.when": "needs the machine producing while the kit changes its mode, which would disturb "
                             "production; the kit runs its mode cases in Stopped",
    "command.select-recipe.active": ("RECIPE-SELECT-001",),
    "command.ack.several": "needs two occurrences of one alarm code, which only the machine can raise",
    "command.completed.any-source": ("CTRL-PACKML-001", "CTRL-PACKML-002", "CTRL-PACKML-003"),
    "command.start.empty-job": "the tour starts jobs with an id of its own, so that each job's events can be "
                               "told apart; an empty id is the operator's",
    "job.id.after": ("TRACE-JOB-003",),
    "write.authority": NO_ACCESS + "; " + NO_PANEL,
    "health.from-alarms": ("CORE-HEALTH-003",),
    "recipe.put.existing": ("RECIPE-TRANSFER-ERR-001",),
    "recipe.put.authority": NO_PANEL + " (Put in Local)",
    "opcua.arguments": ("CTRL-PACKML-002", "CORE-OPCUA-002"),
    "opcua.events-read.zero": ("CORE-EVENT-001",),
    "opcua.unitless": ("CORE-COUNTERS-001",),
    "modbus.outside-map": ("CORE-MODBUS-005",),
    "modbus.mailbox.check": ("CORE-MODBUS-004",),
}
BINDING_CLAUSES = [
    ("common.yaml § opcua.namespace_uri, machines_folder", "the namespace and the machine object",
     ("CORE-OPCUA-001",)),
    ("opcua binding § EngineeringUnits, EURange", "units and ranges of numeric nodes", ("<sub-unit>-001",)),
    ("opcua binding § methods", "one method per command, the binding's Events and Recipes methods",
     ("CORE-OPCUA-002",)),
    ("opcua binding § SourceTimestamp", "source timestamps", ("DC-SAMPLING-003",)),
    ("common.yaml § modbus.base_address, marker, blocks", "the marker and the block chain", ("CORE-MODBUS-001",)),
    ("common.yaml § modbus.word_order", "ABCD word order and encodings", ("CORE-MODBUS-002",)),
    ("common.yaml § modbus.alarm_words, command_length, event_payload_chars, dictionary", "the binding areas",
     ("CORE-MODBUS-003",)),
    ("common.yaml § heartbeat_period_s", "the heartbeat period", ("CORE-STATUS-003",)),
    ("common.yaml § heartbeat_timeout_s", "availability after the heartbeat timeout", ("CORE-STATUS-003", "CORE-LINK-001")),
    ("common.yaml § recipe_hash", "the recipe hash (RFC 8785)", ("RECIPE-ACTIVE-003", "RECIPE-TRANSFER-001")),
    ("common.yaml § self-description", "the self-description", ("CORE-SELF-001", "CORE-SELF-002", "CORE-SELF-003")),
    ("common.yaml § events (envelope, seq, ring)", "the event envelope, seq and ring",
     ("CORE-EVENT-001", "CORE-EVENT-002", "CORE-LINK-002")),
    ("common.yaml § result_codes", "result codes", ("CTRL-PACKML-ERR-001", "CTRL-CMD-ERR-001", "CTRL-CMD-ERR-002")),
    ("common.yaml § commands (Remote only)", "commands need control authority Remote", ("CTRL-AUTH-001",)),
]


def _sub_unit_uid(catalogue: Catalogue, su: SubUnit, owner: str) -> str | None:
    for case in catalogue.cases.values():
        if case.sub_unit == su.id and case.id.endswith("-001") and (not case.classes or owner in case.classes):
            return case.unit
    return None


def _variable_clauses(spec: Spec, catalogue: Catalogue) -> list[Clause]:
    out = []
    owners: list[tuple[str, list[SubUnit]]] = [("core", spec.core.sub_units)]
    owners += [(cid, c.sub_units) for cid, c in spec.classes.items()]
    for owner, sub_units in owners:
        file = "common.yaml" if owner == "core" else f"{owner}.yaml"
        for su in sub_units:
            uid = _sub_unit_uid(catalogue, su, owner)
            present, values = ((f"{uid}-001",), (f"{uid}-002",)) if uid else ((), ())
            samples = any(v.category.value == "sample" and v.sampling_ms for v in su.variables)
            where = f"{file} § sub_units[{su.id}]"
            columns: list[tuple[str, tuple[str, ...], str]] = [
                ("type", present + values, ""),
                ("unit", present, ""),
                ("range", present + values, ""),
                ("resolution", (), NO_RESOLUTION),
                ("access", present, ""),
                ("category", (), NO_CATEGORY),
                ("tier", present, ""),
                ("sampling", ("DC-SAMPLING-002",) if samples and owner != "core" else ("CORE-STATUS-003",)
                 if su.id == "status" else (),
                 "" if (samples and owner != "core") or su.id == "status" else
                 "these variables change on events, not on a clock: the kit measures periods of process values "
                 "(category sample) only"),
            ]
            for column, cases, reason in columns:
                out.append(Clause(f"{where} · {column}", f"the {column} column of `{su.id}`", cases, reason))
    return out


def clauses(spec: Spec, catalogue: Catalogue) -> list[Clause]:
    """Every normative clause of the spec with its cases or reason."""
    core = spec.core
    out = _variable_clauses(spec, catalogue)
    for state in core.state_derivation.packml:
        out.append(Clause(f"common.yaml § state_derivation.packml[{state}]", f"item and E10 state in {state}",
                          ("CORE-STATE-003",)))
    for mode in core.state_derivation.operation_mode:
        out.append(Clause(f"common.yaml § state_derivation.operation_mode[{mode}]", f"the override of {mode}",
                          ("CORE-STATE-003",)))
    out.append(Clause("common.yaml § state_derivation.unit_mode", "unit_mode follows the operation mode",
                      ("CORE-STATE-003",)))
    packml_cases = {c.clause.rsplit("[", 1)[-1].rstrip("]"): c.id for c in catalogue.cases.values()
                    if c.clause.startswith("common.yaml § packml.transitions[")}
    for t in core.packml.transitions:
        out.append(Clause(f"common.yaml § packml.transitions[{t.command}]", f"{t.command}: {', '.join(t.source)} -> "
                          f"{t.target}", (packml_cases[t.command], "CTRL-PACKML-ERR-001")
                          if t.command in packml_cases else ()))
    for cmd in core.commands:
        cases = (packml_cases[cmd.id],) if cmd.id in packml_cases else COMMAND_CASES.get(cmd.id, ())
        out.append(Clause(f"common.yaml § commands[{cmd.id}]", f"the command {cmd.id}", cases))
    for e in core.events:
        out.append(Clause(f"common.yaml § events[{e.id}]", f"when {e.id} is emitted", EVENT_CASES.get(e.id, ()),
                          EVENT_REASONS.get(e.id, "")))
        for f in e.payload:
            out.append(Clause(f"common.yaml § events[{e.id}].payload.{f.name}", f"{e.id}.{f.name} ({f.type})",
                              ("CORE-EVENT-003",)))
    out.append(Clause("common.yaml § alarms; <class>.yaml § alarms", "the alarm catalogue",
                      ("CORE-ALARM-001", "CORE-ALARM-002", "CORE-ALARM-003")))
    for r in core.rules:
        given = RULE_COVERAGE.get(r.id, ())
        out.append(Clause(f"common.yaml § rules[{r.id}]", r.text, given if isinstance(given, tuple) else (),
                          given if isinstance(given, str) else ""))
    for cid, what, cases in BINDING_CLAUSES:
        out.append(Clause(cid, what, cases))
    return out


def unknown_cases(spec: Spec, catalogue: Catalogue) -> list[str]:
    """Cases the matrix names that the catalogue does not have (a renamed case must be renamed here too)."""
    known = set(catalogue.cases)
    return sorted({f"{c.id}: {case}" for c in clauses(spec, catalogue) for case in c.cases
                   if case not in known and not case.startswith("<")})


def gaps(spec: Spec, catalogue: Catalogue) -> list[str]:
    """Clauses with neither a case nor a reason."""
    return [c.id for c in clauses(spec, catalogue) if not c.covered]


def markdown(spec: Spec, catalogue: Catalogue) -> str:
    rows = ["| Clause | What | Checked by |", "|---|---|---|"]
    for c in clauses(spec, catalogue):
        by = ", ".join(f"`{x}`" for x in c.cases) if c.cases else f"not checkable: {c.reason}" if c.reason else "**GAP**"
        rows.append(f"| {c.id} | {c.what.replace('|', '/')} | {by} |")
    covered = [c for c in clauses(spec, catalogue) if c.cases]
    reasoned = [c for c in clauses(spec, catalogue) if not c.cases and c.reason]
    head = ("# Conformance kit — coverage matrix\n\n"
            "<!-- Generated: linegw conformance --coverage > gateway/conformance/COVERAGE.md "
            "(tests/conformance/test_coverage.py fails while it is stale). -->\n\n"
            f"Spec {spec.version}: {len(rows) - 2} clauses, {len(covered)} checked by a case, {len(reasoned)} not "
            f"checkable (with the reason), {len(gaps(spec, catalogue))} gaps. Every column of every variable table, "
            "every row of the state tables, every command, event type and payload field, the bindings and every rule "
            "of `common.yaml`.\n\n")
    return head + "\n".join(rows) + "\n"


__all__ = ["Clause", "clauses", "gaps", "markdown", "unknown_cases"]
