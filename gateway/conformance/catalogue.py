"""The conformance catalogue: profiles -> conformance units -> test cases.

Built from the spec: every sub-unit of the core and of each class becomes a
conformance unit with a presence test (-001) and a values test (-002); the
PackML transition table gives one test per command; the rest (self-description,
bindings, events, alarms, resilience, data quality) is the fixed part below.
Test IDs are stable for a spec version: `<PROFILE>-<UNIT>-<NNN>`, and
`<PROFILE>-<UNIT>-ERR-<NNN>` for negative tests.

Each case names the clause it checks (`<spec file> § <path>`) and a page of
the generated reference docs, so a failure points at the text to read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from interface_spec import Spec
from interface_spec.model import SubUnit, Tier

LAYERS = ("static", "presence", "behaviour", "negative", "data_quality", "resilience")
SEVERITIES = ("critical", "major", "minor")
BINDINGS = ("opcua", "modbus")
MODES = ("native", "integration")
# Profiles that are not classes, with their ID prefixes; class profiles use the class id.
PROFILE_CODES = {"Core": "CORE", "Control": "CTRL", "Recipe": "RECIPE", "Traceability": "TRACE", "DataCollection": "DC"}
# Core sub-units: (profile, unit code, docs anchor).
CORE_SUB_UNITS = {
    "identification": ("Core", "IDENT", "identification"),
    "status": ("Core", "STATUS", "status-heartbeat-and-availability"),
    "state": ("Core", "STATE", "state-model"),
    "health": ("Core", "HEALTH", "health"),
    "counters": ("Core", "COUNTERS", "counters"),
    "recipe": ("Recipe", "ACTIVE", "recipe-and-job"),
    "job": ("Traceability", "JOB", "recipe-and-job"),
    "meter": ("Core", "METER", "meter"),
}
DOCS = "interface_spec/docs/"


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest class

    id: str
    profile: str
    unit: str
    title: str
    description: str
    clause: str  # "<spec file> § <path>"
    doc: str  # page#anchor in interface_spec/docs
    layer: str
    severity: str = "major"
    tier: str = "M"  # M: mandatory in its profile; R: recommended; O: optional
    needs_control: bool = False  # sends commands or changes the machine: only with --allow-control
    bindings: tuple[str, ...] = BINDINGS
    modes: tuple[str, ...] = ("native",)
    sub_unit: str | None = None  # generated sub-unit tests
    classes: tuple[str, ...] = ()  # empty: every class


@dataclass
class Unit:
    id: str
    profile: str
    title: str
    cases: list[TestCase] = field(default_factory=list)


@dataclass
class Catalogue:
    spec_version: str
    units: dict[str, Unit]  # in catalogue order
    profiles: list[str]

    @property
    def cases(self) -> dict[str, TestCase]:
        return {c.id: c for u in self.units.values() for c in u.cases}

    def for_class(self, cls: str) -> Catalogue:
        """The cases a machine of this class is tested against (other classes' profiles left out)."""
        units = {}
        for uid, u in self.units.items():
            cases = [c for c in u.cases if not c.classes or cls in c.classes]
            if cases:
                units[uid] = Unit(u.id, u.profile, u.title, cases)
        others = {c.capitalize() for c in ("coater", "winder", "formation")} - {cls.capitalize()}
        return Catalogue(self.spec_version, {k: v for k, v in units.items() if v.profile not in others},
                         [p for p in self.profiles if p not in others])

    def counts(self) -> tuple[int, int, int]:
        """(profiles, units, test cases)."""
        return len({u.profile for u in self.units.values()}), len(self.units), len(self.cases)


def profile_code(profile: str) -> str:
    return PROFILE_CODES.get(profile, profile.upper())


# --- the fixed part ---------------------------------------------------------------------------------------

def _fixed() -> list[tuple[str, str, str, list[dict[str, Any]]]]:
    """(unit id, profile, unit title, cases) for everything not generated per sub-unit."""
    opcua, modbus = ("opcua",), ("modbus",)
    both = ("native", "integration")
    return [
        ("CORE-SELF", "Core", "Self-description", [
            dict(id="CORE-SELF-001", title="Self-description served and valid", layer="static", severity="critical",
                 clause="common.yaml § self-description (schema/self-description.schema.json)", doc="core.md#self-description",
                 description="Reads the self-description (OPC UA `SelfDescription`, Modbus `dictionary.length`/`dictionary.text`) "
                             "and validates it as JSON against the self-description schema: required fields, types, "
                             "no unknown fields."),
            dict(id="CORE-SELF-002", title="Self-description agrees with the machine", layer="static", severity="critical",
                 clause="common.yaml § self-description", doc="core.md#self-description",
                 description="`equipment_class` is the claimed class and `identification.equipment_class`; `spec_version` "
                             "equals `identification.spec_version` and has the kit's major version; `profiles` are known "
                             "profile names, include Core and the class profile and equal `identification.supported_profiles`; "
                             "`counts` name the class's array sub-units, lie within 1..max and equal the count variables."),
            dict(id="CORE-SELF-003", title="Optional variables and vendor extensions well-formed", layer="static",
                 severity="minor", clause="common.yaml § self-description", doc="core.md#self-description",
                 description="`optional_variables` are recommended or optional variables of the class (array paths as "
                             "`sub_unit[].var`); vendor variables have unique `<vendor>:<id>` ids and known unit codes "
                             "(unknown unit: warning); `vendor_substates` keys and `native_status_map` values are PackML states."),
        ]),
        ("CORE-MAPPING", "Core", "Integration mapping", [
            dict(id="CORE-MAPPING-001", title="Mapping file valid for the class", layer="static", severity="critical",
                 modes=("integration",), clause="interface_spec/vendor.py (the vendor mapping file format)", doc="../../README.md#adding-equipment",
                 description="Loads the mapping file with the gateway's loader: every path, enum member, alarm, command "
                             "and event trigger is checked against the spec; its class and protocol are the ones claimed."),
            dict(id="CORE-MAPPING-002", title="What the gateway needs is mapped", layer="presence", severity="critical",
                 modes=("integration",), clause="common.yaml § sub_units[status, state, counters]", doc="core.md#state-model",
                 description="The mapping provides, and the machine serves with good quality: `status.heartbeat` "
                             "(availability), `state.packml_state` and `state.control_authority` (state, command "
                             "interlocks), the three unit counters, and `identification.manufacturer`/`model` (read "
                             "or given as nameplate)."),
        ]),
        ("CORE-OPCUA", "Core", "OPC UA binding", [
            dict(id="CORE-OPCUA-001", title="Namespace, machine object and binding nodes", layer="presence",
                 severity="critical", bindings=opcua, clause="common.yaml § opcua", doc="opcua.md#address-space",
                 description="The namespace `urn:linegw:line-interface:v1` is on the server; `Objects/Machines/<machine>` "
                             "exists with `Alarms/ActiveCodes`, `Events/LastSequence` and `SelfDescription`."),
            dict(id="CORE-OPCUA-002", title="Methods of the binding", layer="presence", severity="critical",
                 bindings=opcua, clause="common.yaml § commands; opcua binding methods", doc="opcua.md#commands",
                 description="Every command is a method `Commands/<Command>`; `Events/Read` and `Recipes/List`, `Get`, "
                             "`Put` exist as methods on their folders (resolved by browse path, not called)."),
        ]),
        ("CORE-MODBUS", "Core", "Modbus binding", [
            dict(id="CORE-MODBUS-001", title="Marker and block chain", layer="presence", severity="critical",
                 bindings=modbus, clause="common.yaml § modbus (base_address, marker, blocks)", doc="modbus.md#block-chain",
                 description="Holding registers at 40000 read \"LnGw\", the common header [1, 600], the class header "
                             "[block id of the claimed class, its length] and the end header [65535, 0]."),
            dict(id="CORE-MODBUS-002", title="Word order and encodings", layer="data_quality", severity="critical",
                 bindings=modbus, clause="common.yaml § modbus.word_order (ABCD)", doc="modbus.md#encodings",
                 description="Multi-register values are high word first: `status.heartbeat` read as uint32 ABCD advances "
                             "by about one per heartbeat period (a step of 65536 means swapped words), and no float32 "
                             "value is a subnormal number (the mark of swapped words or an integer in a float register)."),
            dict(id="CORE-MODBUS-003", title="Binding areas", layer="presence", severity="critical", bindings=modbus,
                 clause="common.yaml § modbus (alarm_words, command_length, event_payload_chars, dictionary)",
                 doc="modbus.md#command-handshake",
                 description="The alarm bit words, the command handshake registers, the events mailbox and the "
                             "self-description area answer reads (no exception) and the self-description length is "
                             "within 1..8000."),
            dict(id="CORE-MODBUS-004", title="The events mailbox echoes its seq in events.seq_check", layer="behaviour",
                 severity="critical", bindings=modbus, clause="common.yaml § rules[modbus.mailbox.check]",
                 doc="modbus.md#events-mailbox",
                 description="From a machine of spec 1.1 or later: selecting the newest event shows its seq in both "
                             "`events.seq` and `events.seq_check`, and selecting seq 0 (no event) shows 0 in both. "
                             "Not applicable to a machine that declares 1.0."),
            dict(id="CORE-MODBUS-005", title="Reads outside the map answer exception 2", layer="negative",
                 severity="major", bindings=modbus, clause="common.yaml § rules[modbus.outside-map]",
                 doc="modbus.md#events-mailbox",
                 description="A read of one holding register just outside each edge of the map (before the marker, "
                             "after the end header, around the self-description) answers Modbus exception 2 "
                             "(Illegal Data Address), not zeros a client would take as values."),
        ]),
        ("CORE-STATE", "Core", "State model", [
            dict(id="CORE-STATE-003", title="Item and E10 state as the derivation table gives", layer="data_quality",
                 severity="critical", modes=both, clause="common.yaml § state_derivation; rules[state.derivation]",
                 doc="core.md#derivation-of-item-state-and-e10-state",
                 description="Every reading of the state variables, taken together, has the `item_state` and "
                             "`e10_state` that the derivation table gives for its `packml_state` and `operation_mode` "
                             "(downtime: UDT or SDT; UDT while a stop-reason alarm is active), and the `unit_mode` "
                             "the operation mode implies. Checked on the served values now and on every StateChanged "
                             "chain position the events allow."),
        ]),
        ("CORE-HEALTH", "Core", "Health", [
            dict(id="CORE-HEALTH-003", title="Device health follows from the alarms and the mode", layer="data_quality",
                 severity="major", modes=both, clause="common.yaml § rules[health.from-alarms]", doc="core.md#health",
                 description="`device_health`, read together with the active alarm set and the operation mode, is what "
                             "the rule gives: FAILURE with a stop-reason alarm, OFF_SPEC with a quality alarm, "
                             "MAINTENANCE_REQUIRED with an equipment warning, CHECK_FUNCTION in Maintenance or Setup, "
                             "NORMAL otherwise."),
        ]),
        ("CORE-STATUS", "Core", "Heartbeat", [
            dict(id="CORE-STATUS-003", title="Heartbeat ticks once per period", layer="data_quality", severity="critical",
                 modes=both, clause="common.yaml § heartbeat_period_s, heartbeat_timeout_s; sub_units[status].heartbeat",
                 doc="core.md#status-heartbeat-and-availability",
                 description="Over the observation window `status.heartbeat` increases by about one per "
                             "`heartbeat_period_s` (0.5 to 1.5 per period on average), never goes back in source-time "
                             "order (a wrap only from near 2^32 to near 0) and never stands still for "
                             "`heartbeat_timeout_s`."),
        ]),
        ("CORE-COUNTERS", "Core", "Counters", [
            dict(id="CORE-COUNTERS-003", title="Counters only grow; processed = good + defective", layer="data_quality",
                 modes=both, clause="common.yaml § sub_units[counters]", doc="core.md#counters",
                 description="During the observation window `processed_count`, `good_count`, `defective_count` and the "
                             "`time_*` counters never decrease in source-time order (unless a CountersReset event "
                             "explains it; a wrap only from near the top of the range to near 0), and every "
                             "reading has processed_count = good_count + defective_count."),
        ]),
        ("CORE-ALARM", "Core", "Alarms", [
            dict(id="CORE-ALARM-001", title="Active alarm set served", layer="presence", severity="critical",
                 clause="common.yaml § alarms; binding alarm area", doc="core.md#alarms",
                 description="The active alarm set is readable: OPC UA `Alarms/ActiveCodes` (UInt32 array), Modbus the "
                             "8 alarm bit words."),
            dict(id="CORE-ALARM-002", title="Active alarms are from the class catalogue", layer="data_quality",
                 clause="common.yaml § alarms; <class>.yaml § alarms", doc="core.md#alarms",
                 description="Every active code is in the core or class alarm catalogue; over Modbus no bit beyond the "
                             "catalogue's length is set."),
            dict(id="CORE-ALARM-003", title="Active set agrees with the alarm events", layer="behaviour", severity="critical",
                 clause="common.yaml § events[AlarmRaised, AlarmCleared]", doc="core.md#alarms",
                 description="For every alarm code in the events read, the newest AlarmRaised/AlarmCleared decides: "
                             "raised means in the active set, cleared means not (an alarm that never clears fails here); "
                             "every active code has an AlarmRaised event when the ring holds it."),
        ]),
        ("CORE-EVENT", "Core", "Events", [
            dict(id="CORE-EVENT-001", title="Event sequence and read access", layer="presence", severity="critical",
                 clause="common.yaml § events (envelope, seq); binding events area", doc="core.md#events",
                 description="The newest sequence number is served (OPC UA `Events/LastSequence`, Modbus "
                             "`events.last_seq`) and the newest event can be read by its seq (`Events/Read`, mailbox); over OPC UA "
                             "`Events/Read` with MaxCount 0 answers at least that event (no client limit)."),
            dict(id="CORE-EVENT-002", title="Events in order, numbered without gaps", layer="data_quality",
                 severity="critical", clause="common.yaml § events (seq, ring of 1000)", doc="core.md#events",
                 description="Events read by seq come oldest first with consecutive seq numbers up to the newest; "
                             "the oldest event the ring must hold (newest - 999, at least 1) is still served; reading "
                             "the same seq twice gives the same envelope."),
            dict(id="CORE-EVENT-003", title="Event envelopes and payloads", layer="data_quality",
                 clause="common.yaml § events[*].payload", doc="core.md#event-types",
                 description="Every event read has a spec event type this class may emit, a numeric `source_ts` not in "
                             "the future and not decreasing with seq (back by more than the clock tolerance: a warning, "
                             "the machine's clock went back), every required payload field with its type, and "
                             "no fields the spec does not define."),
            dict(id="CORE-EVENT-004", title="A StateChanged event for every state change", layer="behaviour",
                 severity="critical", clause="common.yaml § events[StateChanged]; sub_units[state]",
                 doc="core.md#state-model",
                 description="Per state variable the StateChanged events form a chain (each `previous` is the "
                             "`current` before it); the newest `current` is the value served now and its `previous` is "
                             "served as `state.previous_<variable>`. A transition without its event breaks the chain."),
        ]),
        ("CORE-LINK", "Core", "Resilience", [
            dict(id="CORE-LINK-001", title="Availability follows a link drop", layer="resilience", severity="critical",
                 clause="common.yaml § heartbeat_timeout_s; sub_units[status].availability",
                 doc="core.md#status-heartbeat-and-availability",
                 description="The gateway's own Device reads the machine through a relay the kit owns; the kit cuts "
                             "it (every connection closed, new ones refused) for the outage time: the gateway shows "
                             "the machine UNAVAILABLE within `heartbeat_timeout_s`, AVAILABLE again within "
                             "`heartbeat_timeout_s` after the link is back, and the heartbeat counted on through the "
                             "outage (about one per period)."),
            dict(id="CORE-LINK-002", title="Events recorded during an outage are replayed in order",
                 layer="resilience", severity="critical", clause="common.yaml § events (seq, ring, replay)",
                 doc="core.md#events",
                 description="At least one event is recorded while the link is down (a producing machine makes "
                             "units; a stopped one gets an operation-mode change and back with --allow-control; "
                             "otherwise a warning). Once back, the gateway receives every event from the first one "
                             "after the cut to the newest, in order, with no gap, each as the machine serves it."),
        ]),
        ("CTRL-PACKML", "Control", "PackML state machine", []),  # filled from the transition table
        ("CTRL-AUTH", "Control", "Control authority", [
            dict(id="CTRL-AUTH-001", title="Local authority blocks commands", layer="behaviour", severity="critical",
                 needs_control=True, clause="common.yaml § commands (Remote only)", doc="core.md#rules",
                 description="Operator step: the control authority is switched to Local at the machine. Every PackML "
                             "command the current state would accept answers cannot_perform_now and changes nothing; "
                             "then the authority goes back to Remote."),
        ]),
        ("CTRL-MODE", "Control", "Operation mode", [
            dict(id="CTRL-MODE-001", title="SetOperationMode switches the mode", layer="behaviour", needs_control=True,
                 clause="common.yaml § commands[SetOperationMode]", doc="core.md#commands",
                 description="In Stopped: SetOperationMode(Maintenance) answers ok, `state.operation_mode` becomes "
                             "Maintenance with a StateChanged event; the same again answers already_in_state; "
                             "SetOperationMode(Processing) answers ok and restores it."),
            dict(id="CTRL-MODE-ERR-001", title="Bad parameter answers parameter_invalid", layer="negative",
                 needs_control=True, clause="common.yaml § commands (parameters); result_codes.parameter_invalid",
                 doc="core.md#rules",
                 description="SetOperationMode with mode 99 (no operation_mode member) answers parameter_invalid and "
                             "the operation mode stays as it was."),
        ]),
        ("CTRL-COUNTERS", "Control", "Counter reset", [
            dict(id="CTRL-COUNTERS-001", title="ResetCounters", layer="behaviour", needs_control=True,
                 clause="common.yaml § commands[ResetCounters]; events[CountersReset]", doc="core.md#commands",
                 description="ResetCounters answers ok; processed, good and defective counts read 0 right after "
                             "(the machine is stopped) and a CountersReset event follows."),
        ]),
        ("CTRL-ALARM", "Control", "Alarm acknowledgement", [
            dict(id="CTRL-ALARM-ERR-001", title="Acknowledging no occurrence answers no_such_object", layer="negative",
                 needs_control=True, clause="common.yaml § commands[AcknowledgeAlarm]; result_codes.no_such_object",
                 doc="core.md#commands",
                 description="AcknowledgeAlarm for a catalogue alarm without an open occurrence, and for a code outside "
                             "the catalogue, answers no_such_object."),
        ]),
        ("CTRL-CMD", "Control", "Unknown and unsupported commands", [
            dict(id="CTRL-CMD-ERR-001", title="Unknown command code answers invalid_command", layer="negative",
                 needs_control=True, bindings=modbus, clause="common.yaml § result_codes.invalid_command",
                 doc="modbus.md#command-handshake",
                 description="A handshake with command code 199 (no such command) answers invalid_command. (Over OPC UA "
                             "commands are methods by name; an unknown one cannot be called.)"),
            dict(id="CTRL-CMD-ERR-002", title="Commands of unclaimed profiles answer not_supported", layer="negative",
                 needs_control=True, clause="common.yaml § result_codes.not_supported", doc="core.md#rules",
                 description="For each optional profile the machine does not claim, its command (SelectRecipe for "
                             "Recipe) answers not_supported. Not applicable when every such profile is claimed."),
        ]),
        ("RECIPE-ACTIVE", "Recipe", "Active recipe", [
            dict(id="RECIPE-ACTIVE-003", title="Recipe hash", layer="data_quality",
                 clause="common.yaml § sub_units[recipe].active_recipe_hash", doc="core.md#recipe-and-job",
                 description="`recipe.active_recipe_hash` is 16 lower-case hex digits; over OPC UA the active recipe "
                             "from `Recipes/Get` has that hash, recomputed with the spec's canonical JSON rule."),
        ]),
        ("RECIPE-SELECT", "Recipe", "Recipe selection", [
            dict(id="RECIPE-SELECT-001", title="SelectRecipe activates a stored recipe", layer="behaviour",
                 needs_control=True, clause="common.yaml § commands[SelectRecipe]; events[RecipeActivated]",
                 doc="core.md#recipe-and-job",
                 description="In Stopped, SelectRecipe with the active recipe's id answers ok and a RecipeActivated "
                             "event carries the id, version and hash that `recipe.active_recipe_*` serve."),
            dict(id="RECIPE-SELECT-ERR-001", title="Unknown recipe answers no_such_object", layer="negative",
                 needs_control=True, clause="common.yaml § commands[SelectRecipe]; result_codes.no_such_object",
                 doc="core.md#commands",
                 description="SelectRecipe with an id the machine does not hold answers no_such_object and the active "
                             "recipe stays as it was."),
        ]),
        ("RECIPE-TRANSFER", "Recipe", "Recipe transfer", [
            dict(id="RECIPE-TRANSFER-001", title="Recipes/Put stores a recipe", layer="behaviour", needs_control=True,
                 bindings=opcua, clause="opcua binding Recipes/Put; events[RecipeChanged]", doc="opcua.md#alarms-events-recipes-self-description",
                 description="Put of a recipe with every class parameter mid-range answers ok; a RecipeChanged event "
                             "follows; `Recipes/List` lists it and `Recipes/Get` returns it with the hash the spec's "
                             "rule gives."),
            dict(id="RECIPE-TRANSFER-ERR-001", title="An invalid recipe is rejected", layer="negative", needs_control=True,
                 bindings=opcua, clause="common.yaml § events[RecipeRejected]; <class>.yaml § recipe",
                 doc="core.md#recipe-and-job",
                 description="Put of a recipe with a parameter outside its range answers parameter_invalid, a "
                             "RecipeRejected event follows and the recipe is not listed. A Put of a stored id and "
                             "version with other parameters answers parameter_invalid with RecipeRejected, and the "
                             "stored recipe stays as it was."),
        ]),
        ("TRACE-JOB", "Traceability", "Job", [
            dict(id="TRACE-JOB-003", title="Jobs start and end with their events", layer="behaviour", needs_control=True,
                 clause="common.yaml § commands[Start].job_id; events[JobStarted, JobCompleted, JobAborted]",
                 doc="core.md#recipe-and-job",
                 description="Each Start the kit sends with its own job id gives a JobStarted event with that id and "
                             "`job.job_id` serves it; the job ends with JobCompleted (good and defective counts) or "
                             "JobAborted (reason) carrying the same id; after it ended, `job.job_id` still serves that id."),
        ]),
        ("TRACE-UNIT", "Traceability", "Units made", [
            dict(id="TRACE-UNIT-001", title="UnitProcessed links each unit to its inputs", layer="data_quality",
                 severity="critical", modes=both, clause="common.yaml § events[UnitProcessed]; <class>.yaml § unit_processed",
                 doc="core.md#unitprocessed-24",
                 description="Every UnitProcessed event (from the machine, or derived by the gateway through the "
                             "mapping) has the class's `unit_type`, a non-empty unique `unit_id`, `result` good or "
                             "reject, a non-empty `made_from` list of input ids and numeric `measurements` named as the "
                             "class profile says. The machine must make at least one unit during the observation."),
            dict(id="TRACE-UNIT-002", title="The counters total the units reported", layer="data_quality",
                 severity="critical", clause="common.yaml § sub_units[counters]; events[UnitProcessed]",
                 doc="core.md#counters",
                 description="Between two still readings of the counters and the newest seq, `good_count` grows by the "
                             "UnitProcessed events with result good and `defective_count` by those with result reject "
                             "(no CountersReset between). With no unit made in the wait: a warning, nothing to judge."),
        ]),
        ("DC-SAMPLING", "DataCollection", "Sampling", [
            dict(id="DC-SAMPLING-001", title="Process values are live", layer="data_quality", severity="critical",
                 modes=both, clause="<class>.yaml § sub_units (category sample, sampling_ms)", doc="README.md#conventions",
                 description="While the machine is in Execute, the class's sample-category values change during the "
                             "observation window; if none does (values that never change), this fails. Requires the "
                             "machine producing during the observation."),
            dict(id="DC-SAMPLING-002", title="Sampling period honoured", layer="data_quality", modes=both,
                 clause="<class>.yaml § sub_units[*].variables[*].sampling_ms", doc="README.md#conventions",
                 description="The spec's sampling period is how often the machine updates a value, at least. For "
                             "each sample value that changes at least three times within the observation window, the "
                             "typical (median) interval between its changes must be at most three times its "
                             "`sampling_ms` plus the kit's scan period. A float process value doing so while the "
                             "machine executes is a clear miss: fail. Otherwise (an integer, which may stand still "
                             "between updates, or a machine not executing) a slow value is a warning."),
            dict(id="DC-SAMPLING-003", title="Source timestamps are sane", layer="data_quality", bindings=opcua,
                 modes=both, clause="opcua binding: SourceTimestamp", doc="opcua.md#data-types-and-attributes",
                 description="Every value carries a SourceTimestamp within the clock tolerance of the kit's clock, "
                             "never in the future beyond it, and never going backwards for one variable."),
        ]),
    ]


def _sub_unit_cases(spec: Spec, owner: str, su: SubUnit) -> tuple[str, str, str, list[TestCase]]:
    """A conformance unit per sub-unit: presence (-001) and values (-002), from the spec's own definition."""
    if owner == "core":
        profile, code, anchor = CORE_SUB_UNITS[su.id]
        file, page = "common.yaml", "core.md"
        classes: tuple[str, ...] = ()
    else:
        profile, code, anchor = owner.capitalize(), su.id.upper().replace("_", ""), su.id
        file, page = f"{owner}.yaml", f"{owner}.md"
        classes = (owner,)
    uid = f"{profile_code(profile)}-{code}"
    tier = su.tier.value if su.tier != Tier.mandatory else "M"
    if profile in ("Recipe", "Traceability"):
        tier = "M"  # optional in the spec, mandatory for a machine claiming the profile
    served = [v for v in su.variables if v.origin == "equipment"]
    array = f" for every instance 1..`{su.array.count_variable}`" if su.array else ""
    clause = f"{file} § sub_units[{su.id}]"
    common: dict[str, Any] = dict(profile=profile, unit=uid, sub_unit=su.id, classes=classes, tier=tier, doc=f"{page}#{anchor}",
                  modes=("native", "integration"))
    cases = [
        TestCase(id=f"{uid}-001", title=f"{su.id}: variables present with type, unit and range", layer="presence",
                 severity="critical" if tier == "M" else "major", clause=clause,
                 description=f"Every mandatory variable of `{su.id}` ({len(served)} in the spec), and every optional one "
                             f"the machine declares, is served{array}: OPC UA with its DataType, an AccessLevel that "
                             f"lets clients write it exactly when its access is rw and, for numbers, "
                             f"EngineeringUnits UnitId and EURange; Modbus with registers that answer. Through a "
                             f"mapping: mapped and read with good quality.", **common),
        TestCase(id=f"{uid}-002", title=f"{su.id}: values valid", layer="data_quality", clause=f"{clause}.variables",
                 description=f"Every value of `{su.id}` read during the observation is of its type, within its "
                             f"plausibility range (numbers), a member of its enumeration (enums) and within its length "
                             f"(strings); no read errors, NaN or infinities.", **common),
    ]
    if su.id == "identification":
        cases.append(TestCase(id=f"{uid}-003", title="identification agrees with the claim", layer="data_quality",
                              severity="critical", clause=clause,
                              description="Mandatory identification strings are not empty; `equipment_class` is the "
                                          "claimed class; `spec_version` has the kit's major version; "
                                          "`supported_profiles` is a comma-separated list of known profiles including "
                                          "Core and the class profile.", **{**common, "modes": ("native",)}))
    return uid, profile, f"{su.id} ({'core' if owner == 'core' else owner})", cases


def _packml_cases(spec: Spec) -> list[TestCase]:
    common: dict[str, Any] = dict(profile="Control", unit="CTRL-PACKML", needs_control=True, doc="core.md#packml-state-machine")
    cases = []
    for i, t in enumerate(spec.core.packml.transitions, start=1):
        via = f" through {t.acting}" if t.acting else ""
        cases.append(TestCase(
            id=f"CTRL-PACKML-{i:03d}", title=f"{t.command}: {', '.join(t.source)} -> {t.target}", layer="behaviour",
            severity="critical", clause=f"common.yaml § packml.transitions[{t.command}]",
            description=f"{t.command} sent in each wait state of {', '.join(t.source)} the tour reaches answers "
                        f"{'accepted_completes_later' if t.acting else 'ok'}, the machine reaches {t.target}{via} within "
                        f"the command timeout, and a CommandCompleted event ({t.command}, ok) follows.", **common))
    n = len(cases) + 1
    cases.append(TestCase(
        id=f"CTRL-PACKML-{n:03d}", title="StateChanged with the right previous state for every transition",
        layer="behaviour", severity="critical", clause="common.yaml § events[StateChanged]; packml.transitions",
        description="Every transition the tour drives (into the acting state and into the target) has a StateChanged "
                    "event for packml_state whose previous and current are the states before and after, and "
                    "`state.previous_packml_state` serves the state before the last change.", **common))
    cases.append(TestCase(
        id="CTRL-PACKML-ERR-001", title="Commands in a state that does not allow them", layer="negative",
        severity="critical", clause="common.yaml § packml.transitions; result_codes",
        description="In every wait state the tour reaches, each PackML command the transition table refuses answers "
                    "the table's code (cannot_perform_now, or already_in_state in its own target state) and changes "
                    "neither the state nor the event sequence.", **common))
    return cases


def build_catalogue(spec: Spec) -> Catalogue:
    """Every profile, unit and test case of the spec, in a fixed order."""
    units: dict[str, Unit] = {}

    def add(uid: str, profile: str, title: str, cases: list[TestCase]) -> None:
        unit = units.setdefault(uid, Unit(uid, profile, title))
        unit.cases.extend(cases)

    fixed = {uid: (profile, title, cases) for uid, profile, title, cases in _fixed()}

    def add_fixed(uid: str) -> None:
        profile, title, raw = fixed.pop(uid)
        add(uid, profile, title, [TestCase(profile=profile, unit=uid, **c) for c in raw])

    for uid in ("CORE-SELF", "CORE-MAPPING", "CORE-OPCUA", "CORE-MODBUS"):
        add_fixed(uid)
    for su in spec.core.sub_units:
        uid, profile, title, cases = _sub_unit_cases(spec, "core", su)
        add(uid, profile, title, cases)
        if uid in fixed:
            add_fixed(uid)
    for uid in list(fixed):
        if fixed[uid][0] == "Core":
            add_fixed(uid)
    add("CTRL-PACKML", "Control", fixed.pop("CTRL-PACKML")[1], _packml_cases(spec))
    for uid in list(fixed):
        add_fixed(uid)
    for cid, cls in spec.classes.items():
        for su in cls.sub_units:
            uid, profile, title, cases = _sub_unit_cases(spec, cid, su)
            add(uid, profile, title, cases)
    order = list(PROFILE_CODES) + [c.capitalize() for c in spec.classes]
    ordered = dict(sorted(units.items(), key=lambda kv: order.index(kv[1].profile)))
    for u in ordered.values():
        for c in u.cases:
            assert c.layer in LAYERS and c.severity in SEVERITIES and c.profile == u.profile, c.id
    return Catalogue(spec.version, ordered, order)
